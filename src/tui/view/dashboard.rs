//! The dashboard: one row per client, the worst first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Wrap};

use std::time::Duration;

use super::{human_bytes, short_time, sparkline, status_badge, status_style, warning_style};
use crate::checks::report::ClientReport;
use crate::display::{age_text, short_duration};
use crate::tui::app::{App, ScanFailure};

/// Columns, dropped from the right-most optional ones on narrow terminals.
struct Column {
    title: &'static str,
    width: u16,
    /// Lower numbers survive longer when space runs out.
    priority: u8,
    cell: fn(&ClientReport, &App) -> String,
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    Column { title: "STATUS", width: 7, priority: 0, cell: |r, _| status_badge(r.status).to_owned() },
    Column { title: "CLIENT", width: 12, priority: 0, cell: |r, _| r.name.clone() },
    Column { title: "BASE", width: 7, priority: 3, cell: |r, app| r.base.taken_at.map_or("—".into(), |t| age_short(t, app)) },
    Column { title: "BASE SIZE", width: 9, priority: 4, cell: |r, _| if r.base.bytes > 0 { human_bytes(r.base.bytes) } else { "—".into() } },
    Column { title: "WAL", width: 6, priority: 2, cell: |r, _| if wal_unknown(r) { "?".into() } else { r.wal.segments.to_string() } },
    Column { title: "WAL SIZE", width: 9, priority: 4, cell: |r, _| if wal_unknown(r) { "?".into() } else { human_bytes(r.wal.bytes) } },
    Column { title: "LAST SEGMENT", width: 24, priority: 5, cell: |r, _| r.wal.last.clone().unwrap_or_else(|| "—".into()) },
    Column { title: "LAST WAL", width: 10, priority: 0, cell: last_wal_cell },
    Column { title: "CADENCE", width: 14, priority: 1, cell: cadence_cell },
    Column { title: "RESTORABLE (UTC)", width: 16, priority: 0, cell: restorable_cell },
        Column { title: "DRILL", width: 7, priority: 4, cell: drill_cell },
    Column { title: "PROBLEMS", width: 12, priority: 0, cell: problems_cell },
];

/// How long a freshly landed segment marks its row.
const LANDED_MARK: Duration = Duration::from_secs(3);

fn client_of<'a>(
    report: &ClientReport,
    app: &'a App,
) -> Option<&'a crate::archive::catalog::Client> {
    app.catalog.as_ref()?.client(&report.name)
}

/// Whether the client's wal/ could not be read: its WAL facts are unknown,
/// not zero (the `unreadable` problem says why).
fn wal_unknown(report: &ClientReport) -> bool {
    report.wal.unreadable
}

fn restorable_cell(report: &ClientReport, _: &App) -> String {
    match report.restorable_to {
        Some(time) => short_time(time),
        None if wal_unknown(report) => "unknown".into(),
        None => "not restorable".into(),
    }
}

/// The age of the last arrival, marked for a few seconds when a segment just landed.
fn last_wal_cell(report: &ClientReport, app: &App) -> String {
    if wal_unknown(report) {
        return "unknown".into();
    }
    let age = report
        .wal
        .last_arrival
        .map_or("never".into(), |t| age_short(t, app));
    let landed =
        client_of(report, app).is_some_and(|c| c.cadence.landed_recently(app.now, LANDED_MARK));
    if landed { format!("◆ {age}") } else { age }
}

/// The current rate (median of the last few intervals) and the recent
/// intervals against the expected cadence.
fn cadence_cell(report: &ClientReport, app: &App) -> String {
    let Some(client) = client_of(report, app) else {
        return String::new();
    };
    let Some(stats) = client.cadence.stats() else {
        return "—".into();
    };
    let intervals = client.cadence.intervals();
    let recent = &intervals[intervals.len().saturating_sub(8)..];
    let expected = app.config.policy_for(&report.name).archive_timeout;
    format!(
        "{:>5} {}",
        short_duration(stats.recent),
        sparkline(recent, expected * 2)
    )
}

/// The age of the last successful restore drill.
fn drill_cell(report: &ClientReport, app: &App) -> String {
    app.last_drill(&report.name).map_or("never".into(), |d| {
        age_short(std::time::UNIX_EPOCH + Duration::from_secs(d.at_unix), app)
    })
}

fn age_short(time: std::time::SystemTime, app: &App) -> String {
    age_text(time, app.now).trim_end_matches(" ago").to_owned()
}

fn problems_cell(report: &ClientReport, _: &App) -> String {
    let counted: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| p.counts())
        .map(|p| p.code.as_str())
        .collect();
    let acknowledged = report.problems.len() - counted.len();
    let mut text = match counted.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    };
    if acknowledged > 0 {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("({acknowledged} ack)"));
    }
    if text.is_empty() { "—".into() } else { text }
}

/// The selection marker `▶ ` in front of every row.
const HIGHLIGHT_WIDTH: u16 = 2;

/// The columns that fit in `width`, keeping the most important ones.
fn visible_columns(width: u16) -> Vec<&'static Column> {
    let mut max_priority = 5;
    loop {
        let chosen: Vec<&Column> = COLUMNS
            .iter()
            .filter(|c| c.priority <= max_priority)
            .collect();
        let needed: u16 = chosen.iter().map(|c| c.width + 1).sum();
        if needed + HIGHLIGHT_WIDTH <= width || max_priority == 0 {
            return chosen;
        }
        max_priority -= 1;
    }
}

/// The screen lines of the client rows in the body `area`: under the scan
/// failure (when there is one), the table's title and its header row. The
/// app learns it through `measure`, to know which row a click is on.
pub fn rows_area(app: &App, area: Rect) -> Rect {
    let [_, table] = split(app, area);
    let [_, rows] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(table);
    rows
}

/// The body: the scan failure's panel (empty without one), then the table.
fn split(app: &App, area: Rect) -> [Rect; 2] {
    let height = app.scan_failure.as_ref().map_or(0, |failure| {
        failure_lines(app, failure, area.width).0.min(area.height)
    });
    Layout::vertical([Constraint::Length(height), Constraint::Min(0)]).areas(area)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let [panel, area] = split(app, area);
    if let Some(failure) = &app.scan_failure {
        draw_scan_failure(frame, panel, app, failure);
    }
    let block = Block::default().borders(Borders::TOP).title(format!(
        " clients · sorted by {}{} ",
        app.sort.label(),
        if app.sort_reversed { " (reversed)" } else { "" }
    ));
    if app.rows.is_empty() {
        let message = if app.catalog.is_none() && app.scan_failure.is_some() {
            "no clients to show until the root can be read".to_owned()
        } else if app.catalog.is_none() {
            format!("scanning {} …", app.root.display())
        } else if app.filter.is_empty() {
            format!("no client folders under {}", app.root.display())
        } else {
            format!(
                "no client matches \"{}\" (Esc clears the filter)",
                app.filter
            )
        };
        frame.render_widget(Paragraph::new(message).block(block), area);
        return;
    }
    let columns = visible_columns(area.width);
    let header = Row::new(columns.iter().map(|c| Cell::from(c.title)))
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = app.rows.iter().map(|report| {
        let style = status_style(report.status, app.color);
        Row::new(columns.iter().enumerate().map(|(i, column)| {
            let text = (column.cell)(report, app);
            if i == 0 {
                Cell::from(Line::from(Span::styled(text, style)))
            } else {
                Cell::from(text)
            }
        }))
    });
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|c| {
            if c.title == "PROBLEMS" {
                Constraint::Min(c.width)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    // The app's offset, which it keeps so the selection is in view: the
    // rows drawn are the rows a click selects.
    let mut state = TableState::default()
        .with_offset(app.list_offset)
        .with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// Why the full scan could not read the root, with its fix (the words
/// `walwarden check` prints), above whatever rows an earlier scan left.
fn draw_scan_failure(frame: &mut Frame, area: Rect, app: &App, failure: &ScanFailure) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let paragraph = Paragraph::new(failure_lines(app, failure, area.width).1)
        .wrap(Wrap { trim: false })
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(Span::styled(" cannot read the backup root ", bold)),
        );
    frame.render_widget(paragraph, area);
}

/// The failure's lines, and the height they take wrapped to the screen's
/// width (plus the title's line).
fn failure_lines(app: &App, failure: &ScanFailure, width: u16) -> (u16, Vec<Line<'static>>) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let stale = if app.catalog.is_some() {
        "the rows below are from the last scan that could read it; "
    } else {
        ""
    };
    let lines = vec![
        Line::from(vec![
            Span::styled("error: ", warning_style(app.color)),
            Span::raw(failure.message.clone()),
        ]),
        Line::from(vec![
            Span::styled("hint: ", bold),
            Span::raw(failure.hint.clone()),
        ]),
        Line::from(format!(
            "{stale}r scans again once it is fixed (walwarden check says the same and exits 3)"
        )),
    ];
    let width = width.max(1) as usize;
    let wrapped: usize = lines
        .iter()
        .map(|l| textwrap::wrap(&l.to_string(), width).len())
        .sum();
    (wrapped as u16 + 1, lines)
}
