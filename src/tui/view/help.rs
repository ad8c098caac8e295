//! The `?` overlay: every key, generated from the keymap table.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::centered;
use crate::tui::app::App;
use crate::tui::keymap::{BINDINGS, Scope};

pub fn draw(frame: &mut Frame, area: Rect, _app: &App) {
    let mut lines = Vec::new();
    for (scope, title) in [
        (Scope::Everywhere, "Everywhere"),
        (Scope::Dashboard, "Dashboard"),
        (Scope::Detail, "Client detail"),
    ] {
        lines.push(Line::from(Span::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        )));
        for binding in BINDINGS.iter().filter(|b| b.scope == scope) {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {:<8}", binding.label),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(binding.help),
            ]));
        }
        lines.push(Line::default());
    }
    lines.push(Line::from(
        "Status: ● OK  ▲ WARN  ✖ CRIT  ? UNKN (could not read)",
    ));
    let height = lines.len() as u16 + 2;
    let popup = centered(area, 64, height);
    frame.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" keys (? or Esc to close) ");
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}
