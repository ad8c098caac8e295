//! The `?` overlay: every key, generated from the keymap table. On a short
//! terminal the sections go side by side instead of being cut off.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::centered;
use crate::tui::app::App;
use crate::tui::keymap::{self, BINDINGS, Scope};

const LABEL_WIDTH: usize = 11;

/// The mouse does what keys do (see `App::on_mouse`); the terminal's own
/// text selection is still there with Shift, as in any program that reads the mouse.
const MOUSE: &str = "Mouse: click selects a client, double-click opens it, the wheel moves and scrolls; Shift-drag selects text";

/// A scope's keys; help texts wrap under themselves within `width`.
fn section(scope: Scope, title: &'static str, width: u16) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(Span::styled(
        title,
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    let text_width = (width as usize).saturating_sub(LABEL_WIDTH + 2).max(12);
    for binding in BINDINGS.iter().filter(|b| b.scope == scope) {
        let mut parts = textwrap::wrap(binding.help, text_width).into_iter();
        let first = parts.next().unwrap_or_default().into_owned();
        lines.push(Line::from(vec![
            Span::styled(
                format!("  {:<LABEL_WIDTH$}", binding.label),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(first),
        ]));
        lines.extend(parts.map(|rest| Line::from(format!("  {:<LABEL_WIDTH$}{rest}", ""))));
    }
    lines.push(Line::default());
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, _app: &App) {
    // Side by side on a short terminal: the busy screens (dashboard, detail)
    // on the right, everything else with the legend on the left.
    let sections = |width: u16| {
        let mut general = section(Scope::Everywhere, "Everywhere", width);
        general.extend(section(Scope::Verify, "Verification window", width));
        general.extend(section(
            Scope::Restore,
            "Restore wizard (y answers yes)",
            width,
        ));
        general.push(Line::from("Status: ● OK ▲ WARN ✖ CRIT ? UNKN"));
        general.extend(
            textwrap::wrap(MOUSE, (width as usize).max(20))
                .into_iter()
                .map(|l| Line::from(l.into_owned())),
        );
        let mut screens = section(Scope::Dashboard, "Dashboard", width);
        screens.extend(section(Scope::Detail, "Client detail", width));
        (general, screens)
    };
    let (general, screens) = sections(area.width.min(84).saturating_sub(2));
    let stacked = (general.len() + screens.len()) as u16 + 2;
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" keys · {} ", keymap::hint_line(Scope::Help)));
    if stacked <= area.height {
        let popup = centered(area, 84, stacked);
        frame.render_widget(Clear, popup);
        let mut lines = screens;
        lines.extend(general);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            popup,
        );
        return;
    }
    let popup = centered(area, area.width, area.height);
    frame.render_widget(Clear, popup);
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
            .spacing(1)
            .areas(inner);
    let (general, _) = sections(left.width);
    let (_, screens) = sections(right.width);
    frame.render_widget(Paragraph::new(general), left);
    frame.render_widget(Paragraph::new(screens), right);
}
