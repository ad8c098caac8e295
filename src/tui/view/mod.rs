//! Drawing: one module per screen, plus the frame around them (header,
//! footer hints from the keymap, help overlay, error popup).

mod dashboard;
mod detail;
mod help;
mod onboarding;
mod verify;
mod wizard;

use std::time::SystemTime;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect, Size};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::archive::watch::WatchMode;
use crate::checks::health::Status;
use crate::display::time_text;
use crate::tui::app::{App, Screen, Viewport};
use crate::tui::keymap::{self, Scope};

/// The frame's three bands: header, body, footer.
fn bands(area: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// What a screen of `size` allows the app: a page's lines and how far the
/// detail can scroll. The loop passes it to `App::update` as an event, so
/// drawing never writes into the state.
pub fn measure(app: &App, size: Size) -> Viewport {
    let [_, body, _] = bands(Rect::new(0, 0, size.width, size.height));
    let rows = dashboard::rows_area(app, body);
    Viewport {
        page: body.height.saturating_sub(3).max(1) as usize,
        detail_max_scroll: detail::max_scroll(app, body),
        list_top: rows.y,
        list_rows: rows.height,
    }
}

pub fn draw(frame: &mut Frame, app: &App) {
    let [header, body, footer] = bands(frame.area());
    draw_header(frame, header, app);
    match &app.screen {
        Screen::Dashboard => dashboard::draw(frame, body, app),
        Screen::Detail { client, scroll } => detail::draw(frame, body, app, client, *scroll),
        Screen::Verify => verify::draw(frame, body, app),
        Screen::Restore => wizard::draw(frame, body, app),
        Screen::NewClient => onboarding::draw(frame, body, app),
    }
    draw_footer(frame, footer, app);
    if app.show_help {
        help::draw(frame, frame.area(), app);
    }
    if let Some(confirm) = &app.confirm {
        draw_confirm(frame, frame.area(), &confirm.question);
    }
    if let Some(error) = &app.last_error {
        draw_error(frame, frame.area(), error, app.color);
    }
}

fn draw_confirm(frame: &mut Frame, area: Rect, question: &str) {
    let popup = centered(area, 70, 8);
    frame.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", keymap::hint_line(Scope::Confirm)));
    frame.render_widget(
        Paragraph::new(question.to_owned())
            .wrap(Wrap { trim: true })
            .block(block),
        popup,
    );
}

/// One line: how many clients, how the rows are kept current (file events,
/// polling, or nothing but the full scans), when the last full scan ran,
/// and the root when there is room. "Live" rows and an older full scan are
/// two facts, said apart: a row can be seconds old while the last full
/// re-read is minutes old.
fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let warn = warning_style(app.color);
    let counts = if app.rows.len() == app.total_clients {
        format!("{} clients", app.total_clients)
    } else {
        format!("{} of {} clients", app.rows.len(), app.total_clients)
    };
    // Each part in a long and a short wording: the short ones when the long
    // do not fit, so the freshness is never the part that is cut.
    let mut parts: Vec<(String, String, Style)> = Vec::new();
    let plain = Style::new();
    match &app.catalog {
        None if app.scan_failure.is_some() => parts.push((
            "CANNOT READ THE ROOT (see below)".into(),
            "CANNOT READ THE ROOT".into(),
            warn,
        )),
        None => parts.push(("first scan running…".into(), "first scan…".into(), plain)),
        Some(catalog) => {
            parts.push((counts.clone(), counts, plain));
            match &app.watching {
                Some(Ok(WatchMode::Native)) => {
                    parts.push(("rows live (file events)".into(), "rows live".into(), plain))
                }
                Some(Ok(WatchMode::Polling { .. })) => {
                    let every = format!(
                        "rows polled every {}",
                        crate::display::short_duration(crate::archive::watch::POLL_INTERVAL)
                    );
                    parts.push((format!("{every} (no file events here)"), every, warn));
                }
                Some(Err(_)) => parts.push((
                    "NOT WATCHING: rows change only with a full scan (r)".into(),
                    "NOT WATCHING".into(),
                    warn,
                )),
                None => {}
            }
            let age = crate::display::age_text(catalog.scanned_at, app.now);
            parts.push(if app.scanning {
                ("full scan running…".into(), "full scan…".into(), plain)
            } else if app.scan_failure.is_some() {
                (
                    "last full scan FAILED (see below)".into(),
                    "full scan FAILED".into(),
                    warn,
                )
            } else {
                (
                    format!("full scan {age}"),
                    format!("full scan {age}"),
                    plain,
                )
            });
        }
    }
    let line = |short_from: usize| {
        let mut spans = vec![Span::styled(
            " walwarden ",
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )];
        for (i, (long, short, style)) in parts.iter().enumerate() {
            spans.push(Span::raw(if i == 0 { " " } else { " · " }));
            let text = if i >= short_from { short } else { long };
            spans.push(Span::styled(text.clone(), *style));
        }
        spans
    };
    let width = area.width as usize;
    // Shorten from the right-most part leftwards until the line fits.
    let mut spans = line(parts.len());
    for short_from in (0..parts.len()).rev() {
        if Line::from(spans.clone()).width() <= width {
            break;
        }
        spans = line(short_from);
    }
    // The root last, only when it fits whole: a cut path would mislead.
    let root = format!(" · {}", app.root.display());
    if Line::from(spans.clone()).width() + root.chars().count() <= width {
        spans.push(Span::raw(root));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    if app.editing_filter {
        spans.push(Span::styled(
            " filter: ",
            Style::new().add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(format!("{}▏", app.filter)));
        spans.push(Span::raw(format!(
            "   {}",
            keymap::hint_line(Scope::Filter)
        )));
    } else {
        if !app.filter.is_empty() && app.screen == Screen::Dashboard {
            spans.push(Span::styled(
                format!(" filter: {} ", app.filter),
                Style::new().add_modifier(Modifier::REVERSED),
            ));
        }
        for (key, help) in keymap::footer_hints(app.key_scope()) {
            spans.push(Span::styled(
                format!(" {key}"),
                Style::new().add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::raw(format!(" {help} ")));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_error(frame: &mut Frame, area: Rect, error: &str, color: bool) {
    let popup = centered(area, 70, 7);
    frame.render_widget(Clear, popup);
    let style = if color {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" error · {} ", keymap::hint_line(Scope::Error)))
        .border_style(style);
    frame.render_widget(
        Paragraph::new(error.to_owned())
            .wrap(Wrap { trim: true })
            .block(block),
        popup,
    );
}

/// A rectangle of at most `width` x `height`, centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

pub fn status_style(status: Status, color: bool) -> Style {
    if !color {
        return match status {
            Status::Ok => Style::new(),
            _ => Style::new().add_modifier(Modifier::BOLD),
        };
    }
    match status {
        Status::Ok => Style::new().fg(Color::Green),
        Status::Warning => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        Status::Critical => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Status::Unknown => Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
    }
}

pub(super) fn warning_style(color: bool) -> Style {
    if color {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

/// `13:08:37`, UTC: for arrivals within the last day.
pub fn clock_time(time: SystemTime) -> String {
    let text = time_text(time);
    text.get(11..19).unwrap_or(&text).to_owned()
}

/// Intervals as a line of block characters, scaled so `scale` fills a cell:
/// scaled to twice the expected cadence, a bar past half height is a late segment.
pub fn sparkline(intervals: &[std::time::Duration], scale: std::time::Duration) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let scale = scale.as_secs_f64().max(0.001);
    intervals
        .iter()
        .map(|i| {
            let level = (i.as_secs_f64() / scale * 7.0).round() as usize;
            BARS[level.min(7)]
        })
        .collect()
}

pub fn status_badge(status: Status) -> &'static str {
    match status {
        Status::Ok => "● OK",
        Status::Warning => "▲ WARN",
        Status::Critical => "✖ CRIT",
        Status::Unknown => "? UNKN",
    }
}

/// `2026-11-25 13:08` in UTC: minutes are what an engineer compares.
pub fn short_time(time: SystemTime) -> String {
    let text = time_text(time);
    text.get(..16).map_or(text.clone(), |t| t.replace('T', " "))
}

pub use crate::display::human_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_expected_cadence() {
        let s = std::time::Duration::from_secs;
        assert_eq!(sparkline(&[s(0), s(30), s(60), s(600)], s(60)), "▁▅██");
        assert_eq!(sparkline(&[], s(60)), "");
    }

    #[test]
    fn colour_is_dropped_with_no_color() {
        assert_eq!(status_style(Status::Critical, false).fg, None);
        assert_eq!(status_style(Status::Critical, true).fg, Some(Color::Red));
    }
}
