//! A client's detail: its problems first (with explanation and fix), then
//! the base backup, the archive per timeline, gaps, and the live arrivals
//! with their cadence against the expected one.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::{clock_time, human_bytes, short_time, sparkline, status_badge, status_style};
use crate::archive::catalog::Client;
use crate::checks::report::ClientReport;
use crate::display::{age_text, short_duration};
use crate::tui::app::App;

/// Arrivals listed under "Live arrivals".
const ARRIVALS_SHOWN: usize = 12;

/// The last scroll that still shows content in `area` (0 when all fits).
pub fn max_scroll(app: &App, area: Rect) -> u16 {
    let Some((report, client)) = app.detail_client() else {
        return 0;
    };
    let lines = lines(report, client, app, area.width as usize);
    // Lines are kept shorter than the screen, so the line count is the height.
    (lines.len() as u16).saturating_sub(area.height.saturating_sub(1))
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, name: &str, scroll: u16) {
    let Some((report, client)) = app.detail_client() else {
        let text = format!("client {name} is no longer in the catalog (Esc to go back)");
        frame.render_widget(
            Paragraph::new(text).block(Block::default().borders(Borders::TOP)),
            area,
        );
        return;
    };
    let lines = lines(report, client, app, area.width as usize);
    // Lines are kept shorter than the screen, so the line count is the height.
    let visible = area.height.saturating_sub(1);
    let max_scroll = (lines.len() as u16).saturating_sub(visible);
    let more = if scroll < max_scroll {
        " ↓ more (j/PgDn) "
    } else {
        ""
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
        Span::raw(more),
    ]);
    let block = Block::default().borders(Borders::TOP).title(title);
    let paragraph = Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false })
        .scroll((scroll.min(max_scroll), 0));
    frame.render_widget(paragraph, area);
}

fn heading(text: &str) -> Line<'static> {
    Line::from(Span::styled(
        text.to_owned(),
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
    ))
}

fn lines(report: &ClientReport, client: &Client, app: &App, width: usize) -> Vec<Line<'static>> {
    let mut out = vec![
        Line::from(format!("folder {}", client.path.display())),
        Line::default(),
    ];
    problems(report, app, width, &mut out);
    jobs(report, app, width, &mut out);
    base_backup(report, client, app, &mut out);
    archive(report, client, app, &mut out);
    gaps(report, client, &mut out);
    refusals(client, width, &mut out);
    target(report, app, width, &mut out);
    arrivals(client, app, &mut out);
    out
}

/// A deep check (with its progress) or a restore drill started here.
fn jobs(report: &ClientReport, app: &App, width: usize, out: &mut Vec<Line<'static>>) {
    let Some(job) = app.jobs.get(&report.name) else {
        return;
    };
    if job.deep_progress.is_some() || job.deep.is_some() {
        out.push(heading("Deep check"));
        match (&job.deep_progress, &job.deep) {
            (Some((done, total)), _) => {
                let ratio = if *total == 0 {
                    0.0
                } else {
                    *done as f64 / *total as f64
                };
                let bar_width = 30usize;
                let filled = ((ratio * bar_width as f64).round() as usize).min(bar_width);
                out.push(Line::from(format!(
                    "  {}{} {done} of {total} files read ({:.0}%)",
                    "█".repeat(filled),
                    "░".repeat(bar_width - filled),
                    ratio * 100.0
                )));
            }
            (None, Some(Ok(deep))) if job.deep_from_memory => {
                let when = deep.verified_at.map_or(String::new(), |t| {
                    format!(", checked {}", crate::display::age_text(t, app.now))
                });
                out.push(Line::from(format!(
                    "  verified through {}{when} (remembered from earlier deep checks; d checks what is new)",
                    deep.verified_through.as_deref().unwrap_or("nothing"),
                )));
            }
            (None, Some(Ok(deep))) => {
                out.push(Line::from(format!(
                    "  verified through {}: {} files read now, {} remembered from earlier runs; {} problems",
                    deep.verified_through.as_deref().unwrap_or("nothing"),
                    deep.files_checked,
                    deep.files_remembered,
                    deep.problems.len()
                )));
                out.push(Line::from(match deep.manifest_verified {
                    Some(true) => "  base.tar.gz matches its backup_manifest (sizes and checksums)",
                    Some(false) => "  base.tar.gz does NOT match its backup_manifest: see the problems",
                    None => "  no backup_manifest to check base.tar.gz against (copy it with the tarballs)",
                }));
            }
            (None, Some(Err(error))) => {
                out.extend(wrapped("  failed: ", error, width));
            }
            (None, None) => {}
        }
        out.push(Line::default());
    }
    if job.drill_running || job.drill.is_some() {
        out.push(heading("Restore drill"));
        if job.drill_running {
            out.push(Line::from(
                "  running (the archive is only read; the scratch folder is removed after)…",
            ));
            for line in job.drill_lines.iter().rev().take(6).rev() {
                out.extend(wrapped("    ", line, width));
            }
        } else if let Some(record) = &job.drill {
            let verdict = if record.success { "PASSED" } else { "FAILED" };
            out.extend(wrapped(
                &format!("  {verdict} in {:.0} s: ", record.seconds),
                &record.detail,
                width,
            ));
        }
        out.push(Line::default());
    }
}

/// The target server's side: settings, archiver counters, the newest failure.
fn target(report: &ClientReport, app: &App, width: usize, out: &mut Vec<Line<'static>>) {
    out.push(heading("Target server"));
    let Some(server) = app.config.target_for(&report.name) else {
        out.push(Line::from(format!(
            "  none configured ([clients.{}.target] shows its archiver here)",
            report.name
        )));
        out.push(Line::default());
        return;
    };
    let entry = app.targets.get(&report.name);
    let reading = entry.is_some_and(|e| e.reading);
    match entry.and_then(|e| Some((e.view.as_ref()?, e.read_at?))) {
        Some((view, read_at)) => {
            let age = crate::display::age_text(read_at, app.now);
            let note = if reading {
                ", reading again…"
            } else {
                "; t reads again"
            };
            out.push(Line::from(format!("  read over SSH {age}{note}")));
            for line in crate::pg::target::summary_lines(view, app.now) {
                out.extend(wrapped("  ", &line, width));
            }
        }
        None if reading => out.push(Line::from(format!(
            "  reading {} over SSH…",
            server.address()
        ))),
        None => out.push(Line::from(format!(
            "  {} not read yet: t reads it",
            server.address()
        ))),
    }
    out.push(Line::default());
}

/// Wraps `text` to `width`, every line after the first indented like the first's text.
fn wrapped(first: &str, text: &str, width: usize) -> Vec<Line<'static>> {
    let indent = " ".repeat(first.chars().count());
    let options = textwrap::Options::new(width.max(indent.len() + 20))
        .initial_indent(first)
        .subsequent_indent(&indent);
    textwrap::wrap(text, options)
        .into_iter()
        .map(|l| Line::from(l.into_owned()))
        .collect()
}

fn problems(report: &ClientReport, app: &App, width: usize, out: &mut Vec<Line<'static>>) {
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
        let code = format!("{}", problem.code);
        let mut message =
            wrapped(&format!("  {badge:<7}{code}: "), &problem.message, width).into_iter();
        if let Some(first) = message.next() {
            // Restyle the head of the first line: badge in its colour, code in bold.
            let text = first.to_string();
            let head = format!("  {badge:<7}{code}");
            let rest = text.strip_prefix(&head).unwrap_or(&text).to_owned();
            out.push(Line::from(vec![
                Span::styled(format!("  {badge:<7}"), style),
                Span::styled(code, Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(rest),
            ]));
        }
        out.extend(message);
        out.extend(wrapped("         fix: ", &problem.fix, width));
        if let Some(note) = &problem.acknowledged {
            out.extend(wrapped("         acknowledged: ", note, width));
        }
    }
    out.push(Line::default());
}

fn base_backup(report: &ClientReport, client: &Client, app: &App, out: &mut Vec<Line<'static>>) {
    let now = app.now;
    out.push(heading("Base backup"));
    if report.base.files.is_empty() {
        out.push(Line::from("  none"));
    }
    for file in &report.base.files {
        out.push(Line::from(format!(
            "  {:<22} {:>9}   {} UTC",
            file.fact.name,
            human_bytes(file.fact.size),
            short_time(file.fact.mtime)
        )));
    }
    if let Some(label) = &report.base.label {
        let age = label
            .start_time
            .map_or(String::new(), |t| format!(" ({})", age_text(t, now)));
        out.push(Line::from(format!(
            "  label {:?}, started {}{age}",
            label.label, label.start_time_text
        )));
        out.push(Line::from(format!(
            "  starts at {} in {}",
            label.start_lsn, label.start_segment
        )));
    }
    let version = report
        .base
        .pg_version
        .clone()
        .map_or("PostgreSQL version unknown".into(), |v| {
            format!("PostgreSQL {v}")
        });
    let sysid = match (
        &report.base.system_identifier,
        report.base.system_identifier_source,
    ) {
        (Some(id), Some("pg_control")) => format!("{id} (pg_control)"),
        (Some(id), Some(_)) => format!("{id} (WAL header in pg_wal.tar.gz)"),
        _ => match client.wal.first_header {
            Some(header) => format!("{} (archived WAL header)", header.system_identifier),
            None => "unknown".into(),
        },
    };
    out.push(Line::from(format!(
        "  {version}, system identifier {sysid}"
    )));
    if let Some(bytes) = report.base.unpacked_bytes {
        out.push(Line::from(format!(
            "  unpacked size {}",
            human_bytes(bytes)
        )));
    }
    out.push(Line::default());
}

fn archive(report: &ClientReport, client: &Client, app: &App, out: &mut Vec<Line<'static>>) {
    let now = app.now;
    out.push(heading("WAL archive"));
    if client.wal.unreadable {
        // Counts, gaps and a window would all be guesses.
        out.push(Line::from(
            "  wal/ cannot be read: its segments, gaps and window are unknown (see Problems)",
        ));
        out.push(Line::default());
        return;
    }
    out.push(Line::from(format!(
        "  {} segments, {}, {} MiB segments",
        report.wal.segments,
        human_bytes(report.wal.bytes),
        report.wal.segment_size >> 20
    )));
    let last = report.wal.last_arrival.map_or("never".into(), |t| {
        format!("{} UTC ({})", short_time(t), age_text(t, now))
    });
    out.push(Line::from(format!("  last arrival {last}")));
    for timeline in &report.wal.timelines {
        let partial = if timeline.partial > 0 {
            format!(" + {} partial", timeline.partial)
        } else {
            String::new()
        };
        let role = if timeline.on_restore_line {
            ""
        } else {
            ", not on the restore's line"
        };
        out.push(Line::from(format!(
            "  timeline {}: {} .. {}",
            timeline.timeline.0, timeline.first, timeline.last
        )));
        out.push(Line::from(format!(
            "     {} segments{partial}, {}{role}",
            timeline.segments,
            human_bytes(timeline.bytes)
        )));
    }
    let line = &client.continuity.restore_line;
    for pair in line.windows(2) {
        out.push(Line::from(format!(
            "  timeline {} branched from {} at {}",
            pair[1].timeline.0, pair[0].timeline.0, pair[1].begin
        )));
    }
    for part in &client.wal.in_flight {
        out.push(Line::from(format!(
            "  in flight: {} ({}, since {})",
            part.name,
            human_bytes(part.size),
            age_text(part.mtime, now)
        )));
    }
    let needed = report.wal.needed_from.clone().unwrap_or_else(|| "—".into());
    let consistent = report
        .wal
        .consistent_at
        .clone()
        .unwrap_or_else(|| "unknown (no .backup file)".into());
    out.push(Line::from(format!("  needed from {needed}")));
    out.push(Line::from(format!("  consistent at {consistent}")));
    let window = match (report.restorable_from, report.restorable_to) {
        (Some(from), Some(to)) => format!(
            "  restorable from {} to {} UTC ({})",
            short_time(from),
            short_time(to),
            age_text(to, now)
        ),
        (None, Some(to)) => format!(
            "  restorable to {} UTC ({})",
            short_time(to),
            age_text(to, now)
        ),
        _ if report.base.label.is_none() => "  NOT RESTORABLE: no usable base backup".into(),
        _ => "  NOT RESTORABLE: WAL needed for consistency is missing".into(),
    };
    out.push(Line::from(window));
    if let Some(through) = &report.wal.restorable_through {
        out.push(Line::from(format!("  replay reaches {through}")));
    }
    let drill = match app.last_drill(&client.name) {
        Some(d) => format!(
            "  last successful restore drill {} ({:.0} s to restore; {})",
            age_text(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.at_unix),
                now
            ),
            d.seconds,
            d.detail
        ),
        None => format!(
            "  no restore drill recorded: run `walwarden drill {}`",
            client.name
        ),
    };
    out.push(Line::from(drill));
    if let Some(rto) = &report.rto {
        let sizes = rto
            .sizes
            .map(|sizes| {
                format!(
                    " for {} of base backup and {} of WAL",
                    human_bytes(sizes.base_bytes),
                    human_bytes(sizes.wal_bytes)
                )
            })
            .unwrap_or_default();
        out.push(Line::from(format!(
            "  estimated restore time {}{sizes}",
            rto.text()
        )));
    }
    out.push(Line::default());
}

fn gaps(report: &ClientReport, client: &Client, out: &mut Vec<Line<'static>>) {
    out.push(heading("Gaps"));
    if client.wal.unreadable {
        out.push(Line::from("  unknown: wal/ cannot be read"));
    } else if report.wal.gaps.is_empty() {
        out.push(Line::from("  none"));
    }
    for gap in &report.wal.gaps {
        let when = if gap.before_consistency {
            ", before consistency"
        } else {
            ""
        };
        let text = if gap.count == 1 {
            format!("  {} (1 segment{when})", gap.first)
        } else {
            format!(
                "  {} .. {} ({} segments{when})",
                gap.first, gap.last, gap.count
            )
        };
        out.push(Line::from(text));
    }
    out.push(Line::default());
}

/// How many of the receiver's refusals the detail lists (newest first).
const REFUSALS_SHOWN: usize = 8;

/// Uploads the receiver (`walwarden receive`) turned away: what was sent,
/// when, and why; nothing of them was kept.
fn refusals(client: &Client, width: usize, out: &mut Vec<Line<'static>>) {
    if client.refusals.is_empty() {
        return;
    }
    out.push(heading("Refused uploads (the receiver's log)"));
    for refusal in client.refusals.iter().rev().take(REFUSALS_SHOWN) {
        let what = match &refusal.name {
            Some(name) => format!("{} {}", refusal.command, crate::display::escape_text(name)),
            None => refusal.command.clone(),
        };
        out.extend(wrapped(
            &format!(
                "  {} {what} [{}]: ",
                crate::display::time_text(refusal.time),
                refusal.code_text
            ),
            &crate::display::escape_text(&refusal.reason),
            width,
        ));
    }
    if client.refusals.len() > REFUSALS_SHOWN {
        out.push(Line::from(format!(
            "  … and {} older ones in .walwarden/receive.log",
            client.refusals.len() - REFUSALS_SHOWN
        )));
    }
    out.push(Line::default());
}

fn arrivals(client: &Client, app: &App, out: &mut Vec<Line<'static>>) {
    out.push(heading("Live arrivals"));
    let expected = app.config.policy_for(&client.name).archive_timeout;
    match client.cadence.stats() {
        Some(stats) => {
            let intervals = client.cadence.intervals();
            let recent = &intervals[intervals.len().saturating_sub(40)..];
            out.push(Line::from(format!(
                "  intervals {}  (full bar = {}: twice the expected cadence)",
                sparkline(recent, expected * 2),
                short_duration(expected * 2)
            )));
            out.push(Line::from(format!(
                "  now every {} (median of the last {} intervals), last {}",
                short_duration(stats.recent),
                stats.intervals.min(crate::archive::watch::RECENT_INTERVALS),
                short_duration(stats.last),
            )));
            out.push(Line::from(format!(
                "  over {} intervals: median {}, max {}",
                stats.intervals,
                short_duration(stats.median),
                short_duration(stats.max),
            )));
        }
        None => out.push(Line::from("  not enough arrivals for a cadence yet")),
    }
    let arrivals: Vec<_> = client.cadence.arrivals().collect();
    let first_shown = arrivals.len().saturating_sub(ARRIVALS_SHOWN);
    for (index, arrival) in arrivals.iter().enumerate().skip(first_shown).rev() {
        let interval = index
            .checked_sub(1)
            .and_then(|prev| arrival.at.duration_since(arrivals[prev].at).ok())
            .map_or("".into(), |i| format!("+{}", short_duration(i)));
        let how = if arrival.live { "seen" } else { "mtime" };
        out.push(Line::from(format!(
            "  {}  {:<27} {:>9}  {:>8}  {how}",
            clock_time(arrival.at),
            arrival.name,
            human_bytes(arrival.size),
            interval
        )));
    }
}
