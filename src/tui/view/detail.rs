//! A client's detail: base backup facts, the archive per timeline, gaps,
//! and every problem with its explanation and fix.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::{human_bytes, short_time, status_badge, status_style};
use crate::catalog::Client;
use crate::health::age_text;
use crate::report::ClientReport;
use crate::tui::app::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, name: &str, scroll: u16) {
    let Some((report, client)) = app.detail_client() else {
        let text = format!("client {name} is no longer in the catalog (Esc to go back)");
        frame.render_widget(
            Paragraph::new(text).block(Block::default().borders(Borders::TOP)),
            area,
        );
        return;
    };
    let title = Line::from(vec![
        Span::styled(
            format!(" {} ", report.name),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("{} ", status_badge(report.status)),
            status_style(report.status, app.color),
        ),
    ]);
    let block = Block::default().borders(Borders::TOP).title(title);
    let lines = lines(report, client, app);
    let paragraph = Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false })
        .scroll((scroll, 0));
    frame.render_widget(paragraph, area);
}

fn heading(text: &str) -> Line<'static> {
    Line::from(Span::styled(
        text.to_owned(),
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
    ))
}

fn lines(report: &ClientReport, client: &Client, app: &App) -> Vec<Line<'static>> {
    let now = app.now;
    let mut out = vec![
        Line::from(format!("folder {}", client.path.display())),
        Line::default(),
    ];

    out.push(heading("Base backup"));
    if report.base.files.is_empty() {
        out.push(Line::from("  none"));
    }
    for file in &report.base.files {
        out.push(Line::from(format!(
            "  {:<22} {:>9}   {}",
            file.fact.name,
            human_bytes(file.fact.size),
            short_time(file.fact.mtime)
        )));
    }
    if let Some(label) = &report.base.label {
        out.push(Line::from(format!(
            "  label {:?}, started {} ({})",
            label.label,
            label.start_time_text,
            label
                .start_time
                .map_or("time zone not UTC".into(), |t| age_text(t, now))
        )));
        out.push(Line::from(format!(
            "  start {} in {}",
            label.start_lsn, label.start_segment
        )));
    }
    let version = report.base.pg_version.clone().unwrap_or_else(|| "?".into());
    let sysid = match (
        &report.base.system_identifier,
        report.base.system_identifier_source,
    ) {
        (Some(id), Some(source)) => format!("{id} (from {source})"),
        _ => "unknown".into(),
    };
    out.push(Line::from(format!(
        "  PostgreSQL {version}, system identifier {sysid}"
    )));
    if let Some(bytes) = report.base.unpacked_bytes {
        out.push(Line::from(format!(
            "  unpacked size {}",
            human_bytes(bytes)
        )));
    }
    out.push(Line::default());

    out.push(heading("WAL archive"));
    let last = report.wal.last_arrival.map_or("never".into(), |t| {
        format!("{} ({})", short_time(t), age_text(t, now))
    });
    out.push(Line::from(format!(
        "  {} segments, {}, segment size {}, last arrival {last}",
        report.wal.segments,
        human_bytes(report.wal.bytes),
        human_bytes_binary(report.wal.segment_size)
    )));
    for timeline in &report.wal.timelines {
        let partial = if timeline.partial > 0 {
            format!(" + {} partial", timeline.partial)
        } else {
            String::new()
        };
        let role = if timeline.on_restore_line {
            "restore follows it"
        } else {
            "not on the restore's line"
        };
        out.push(Line::from(format!(
            "  timeline {:<3} {} … {}  {:>6} segments{partial}, {}  ({role})",
            timeline.timeline.0,
            timeline.first,
            timeline.last,
            timeline.segments,
            human_bytes(timeline.bytes)
        )));
    }
    for part in &report.wal.in_flight {
        out.push(Line::from(format!("  in flight: {part}")));
    }
    let needed = report.wal.needed_from.clone().unwrap_or_else(|| "—".into());
    let consistent = report
        .wal
        .consistent_at
        .clone()
        .unwrap_or_else(|| "unknown (no .backup file)".into());
    out.push(Line::from(format!(
        "  needed from {needed}, consistent at {consistent}"
    )));
    let window = match (report.restorable_from, report.restorable_to) {
        (Some(from), Some(to)) => format!(
            "  restorable from {} to {} ({})",
            short_time(from),
            short_time(to),
            age_text(to, now)
        ),
        (None, Some(to)) => format!("  restorable to {} ({})", short_time(to), age_text(to, now)),
        _ => "  NOT RESTORABLE: the WAL needed for consistency is missing".into(),
    };
    out.push(Line::from(window));
    if let Some(through) = &report.wal.restorable_through {
        out.push(Line::from(format!("  replay reaches {through}")));
    }
    out.push(Line::default());

    out.push(heading("Gaps"));
    if report.wal.gaps.is_empty() {
        out.push(Line::from("  none"));
    }
    for gap in &report.wal.gaps {
        let when = if gap.before_consistency {
            "  before consistency"
        } else {
            ""
        };
        out.push(Line::from(format!(
            "  {} … {}  ({} segments){when}",
            gap.first, gap.last, gap.count
        )));
    }
    out.push(Line::default());

    out.push(heading("Problems"));
    if report.problems.is_empty() {
        out.push(Line::from("  none"));
    }
    for problem in &report.problems {
        let style = if problem.counts() {
            status_style(problem.severity, app.color)
        } else {
            Style::new()
        };
        let badge = if problem.counts() {
            status_badge(problem.severity)
        } else {
            "  ack"
        };
        out.push(Line::from(vec![
            Span::styled(format!("  {badge:<7}"), style),
            Span::styled(
                format!("{}", problem.code),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(": {}", problem.message)),
        ]));
        out.push(Line::from(format!("           fix: {}", problem.fix)));
        if let Some(note) = &problem.acknowledged {
            out.push(Line::from(format!("           acknowledged: {note}")));
        }
    }
    out
}

fn human_bytes_binary(bytes: u32) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
