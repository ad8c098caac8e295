//! The verification window: the checklist with its countdown, the base
//! check's progress bar, and the new segments as they arrive.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};

use super::{human_bytes, short_time};
use crate::checks::verify::{ItemState, REMINDER};
use crate::display::short_duration;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(verification) = &app.verification else {
        return;
    };
    let now = app.now;
    let over = verification.is_over(now);
    let items = verification.items(now);
    let passed = items.iter().all(|i| i.state == ItemState::Pass);
    let state = match (over, passed) {
        (false, _) => format!("{} left", short_duration(verification.remaining(now))),
        (true, true) => "PASS".to_owned(),
        (true, false) => "FAIL".to_owned(),
    };
    let title_style = match (over, passed, app.color) {
        (true, true, true) => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        (true, false, true) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().add_modifier(Modifier::BOLD),
    };
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Line::from(vec![
            Span::styled(
                format!(" verify {} ", verification.client),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!("{state} "), title_style),
        ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Details wrap: room for two lines each, three for the first failing one.
    let checklist_height = items.len() as u16 * 2
        + 1
        + items
            .iter()
            .filter(|i| i.state == ItemState::Fail)
            .count()
            .min(2) as u16;
    let [settings, checklist, gauge, arrivals, reminder] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(checklist_height),
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(2),
    ])
    .areas(inner);

    let s = verification.settings;
    frame.render_widget(
        Paragraph::new(format!(
            "window {} from {} UTC · a segment at least every {} (+{} slack) · at least {} new",
            short_duration(s.window),
            short_time(verification.started_at),
            short_duration(s.expect_interval),
            short_duration(s.slack),
            s.min_segments
        )),
        settings,
    );

    let mut lines = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let (mark, style) = match item.state {
            ItemState::Pass => ("[PASS]", Color::Green),
            ItemState::Fail => ("[FAIL]", Color::Red),
            ItemState::Running => ("[ .. ]", Color::Yellow),
            ItemState::Pending => ("[    ]", Color::Reset),
        };
        let style = if app.color {
            Style::new().fg(style).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {mark} "), style),
            Span::raw(format!("{}. {}", index + 1, item.title)),
        ]));
        let options = textwrap::Options::new((checklist.width as usize).max(30))
            .initial_indent("         ")
            .subsequent_indent("         ");
        lines.extend(
            textwrap::wrap(&item.detail, options)
                .into_iter()
                .map(|l| Line::from(l.into_owned())),
        );
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), checklist);

    let (ratio, label) = match (&verification.base, &verification.base_progress) {
        (Some(base), _) => (
            1.0,
            format!("base backup read: {}", human_bytes(base.bytes)),
        ),
        (None, Some(p)) => (
            p.done as f64 / p.total.max(1) as f64,
            format!(
                "reading {}: {} of {}",
                p.file,
                human_bytes(p.done),
                human_bytes(p.total)
            ),
        ),
        (None, None) => (0.0, "starting".to_owned()),
    };
    frame.render_widget(
        Gauge::default().ratio(ratio.clamp(0.0, 1.0)).label(label),
        gauge,
    );

    let mut lines = vec![Line::from(Span::styled(
        "New segments",
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    if verification.arrivals.is_empty() {
        lines.push(Line::from("  none yet"));
    }
    for arrival in verification.arrivals.iter().rev() {
        let interval = arrival
            .interval
            .map_or("—".into(), |i| format!("+{}", short_duration(i)));
        let verdict = arrival.failure.as_deref().unwrap_or("ok");
        lines.push(Line::from(format!(
            "  {}  {}  {:>9}  {:>7}  {verdict}",
            super::clock_time(arrival.at),
            arrival.name,
            human_bytes(arrival.check.size),
            interval
        )));
    }
    frame.render_widget(Paragraph::new(lines), arrivals);
    let closing = match (&verification.target_warning, over) {
        (Some(warning), false) => format!("Target: {warning}"),
        (_, true) => REMINDER.to_owned(),
        (None, false) => "Esc ends the window now with the result so far.".to_owned(),
    };
    frame.render_widget(Paragraph::new(closing).wrap(Wrap { trim: true }), reminder);
}
