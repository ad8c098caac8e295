//! The restore wizard: the form, then the step list with marks, the exact
//! commands, a live log pane, the pending confirmation, and the summary.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};

use super::centered;
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::steps::StepKind;
use crate::ops::walget::progress::ReplayProgress;
use crate::tui::app::App;
use crate::tui::keymap::{self, Scope};
use crate::tui::wizard::{Field, Phase, Proposals, Wizard};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(wizard) = &app.wizard else { return };
    let state = match &wizard.phase {
        Phase::Form => "set up".to_owned(),
        Phase::Running if wizard.dry_run => "dry run running".to_owned(),
        Phase::Running => "running".to_owned(),
        Phase::Finished { ok: true, .. } => "finished".to_owned(),
        Phase::Finished { ok: false, .. } => "FAILED".to_owned(),
    };
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        format!(" restore {} · {state} ", wizard.client),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if wizard.phase == Phase::Form {
        draw_form(frame, inner, wizard);
        return;
    }
    let [steps, gauge, replay, commands, log] = Layout::vertical([
        Constraint::Length(StepKind::ALL.len() as u16 + 2),
        Constraint::Length(1),
        Constraint::Length(u16::from(wizard.replay.is_some())),
        Constraint::Length(6),
        Constraint::Min(3),
    ])
    .areas(inner);
    if let Some(progress) = &wizard.replay {
        frame.render_widget(Paragraph::new(replay_line(progress)), replay);
    }
    if let Some((_, ratio, label)) = &wizard.gauge {
        let text = format!("{label}: {:.0}%", ratio * 100.0);
        frame.render_widget(
            Gauge::default().ratio(ratio.clamp(0.0, 1.0)).label(text),
            gauge,
        );
    }
    draw_steps(frame, steps, wizard, app.color);
    let shown: Vec<Line> = wizard
        .commands
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|c| Line::from(format!("  $ {c}")))
        .collect();
    frame.render_widget(
        Paragraph::new(shown).block(Block::default().title(" commands ")),
        commands,
    );
    draw_log(frame, log, wizard, app.color);
    if let Some(question) = &wizard.question {
        let popup = centered(area, 70, 7);
        frame.render_widget(Clear, popup);
        let text = format!(
            "{question}\n\n{}",
            keymap::hint_line(Scope::RestoreQuestion)
        );
        let block = Block::default().borders(Borders::ALL).title(" confirm ");
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            popup,
        );
    }
}

/// `replay: segment 57 of 130 (…), 181 MB/s, about 12 s left` under the gauge.
pub fn replay_line(progress: &ReplayProgress) -> String {
    format!("replay: {}", crate::display::escape_text(&progress.text()))
}

/// Under the settings field: where its text came from, and why each
/// proposed setting is needed here.
fn proposal_lines(wizard: &Wizard) -> Vec<Line<'static>> {
    const INDENT: &str = "                        ";
    let dim = Style::new().add_modifier(Modifier::DIM);
    let for_dir = |data_dir: &str| {
        if data_dir.is_empty() {
            String::new()
        } else {
            format!(" into {data_dir}")
        }
    };
    let mut lines: Vec<String> = match &wizard.proposals {
        Proposals::Asked { data_dir } => vec![format!(
            "checking the base backup's settings against this host{}…",
            for_dir(data_dir)
        )],
        Proposals::Ready { reasons, .. } if reasons.is_empty() => {
            vec!["the base backup's settings fit this host: none needed".into()]
        }
        Proposals::Ready {
            data_dir, reasons, ..
        } => {
            let mut lines = vec![format!(
                "proposed for this host{}, because:",
                for_dir(data_dir)
            )];
            lines.extend(reasons.iter().map(|r| format!("  {r}")));
            lines
        }
        Proposals::Failed { error, .. } => vec![format!("no proposals: {error}")],
    };
    if wizard.settings_edited {
        lines.push("(edited: proposals no longer replace it)".into());
    }
    lines
        .into_iter()
        .map(|text| Line::from(Span::styled(format!("{INDENT}{text}"), dim)))
        .collect()
}

fn draw_form(frame: &mut Frame, area: Rect, wizard: &Wizard) {
    let field = |label: &str, value: String, which: Field| {
        let focused = wizard.focus == which;
        let style = if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        Line::from(vec![
            Span::raw(format!("  {label:<22}")),
            Span::styled(format!("{value}{}", if focused { "▏" } else { "" }), style),
        ])
    };
    let mut lines = vec![
        Line::from(
            "Restore this client's base backup and WAL into a data directory. Its current contents are moved aside, never deleted.",
        ),
        Line::default(),
        field("data directory", wizard.data_dir.clone(), Field::DataDir),
        field(
            "target time (optional)",
            wizard.target_time.clone(),
            Field::TargetTime,
        ),
        field("PostgreSQL OS user", wizard.os_user.clone(), Field::OsUser),
        field(
            "settings KEY=VALUE,…",
            wizard.settings.clone(),
            Field::Settings,
        ),
    ];
    lines.extend(proposal_lines(wizard));
    lines.extend([
        field(
            "dry run (Space)",
            if wizard.dry_run {
                "[x] print what would happen, change nothing".into()
            } else {
                "[ ] restore for real".into()
            },
            Field::DryRun,
        ),
        Line::default(),
        Line::from(format!("  {}", keymap::hint_line(Scope::RestoreForm))),
    ]);
    if wizard.start_when_proposed {
        lines.push(Line::from(Span::styled(
            "  starting as soon as this host's settings are worked out…",
            Style::new().add_modifier(Modifier::BOLD),
        )));
    }
    if let Some(error) = &wizard.form_error {
        lines.push(Line::from(Span::styled(
            format!("  {error}"),
            Style::new().add_modifier(Modifier::BOLD),
        )));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn draw_steps(frame: &mut Frame, area: Rect, wizard: &Wizard, color: bool) {
    let current = wizard.current_step();
    let mut lines = Vec::new();
    for (index, (step, outcome, detail)) in wizard.steps.iter().enumerate() {
        let (mark, tint) = match outcome {
            Some(Outcome::Done) => ("[done]", Color::Green),
            Some(Outcome::DryRun) => ("[dry ]", Color::Cyan),
            Some(Outcome::Skipped) => ("[skip]", Color::Yellow),
            Some(Outcome::Failed) => ("[FAIL]", Color::Red),
            Some(Outcome::Started) => ("[ .. ]", Color::Yellow),
            None if current == Some(*step) => ("[ .. ]", Color::Yellow),
            None => ("[    ]", Color::Reset),
        };
        let style = if color {
            Style::new().fg(tint).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {mark} "), style),
            Span::raw(format!("{}. {:<44} {detail}", index + 1, step.title())),
        ]));
    }
    if let Phase::Finished { message, .. } = &wizard.phase {
        lines.push(Line::from(Span::styled(
            format!(" {message}   ({})", keymap::hint_line(Scope::Done)),
            Style::new().add_modifier(Modifier::BOLD),
        )));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_log(frame: &mut Frame, area: Rect, wizard: &Wizard, color: bool) {
    let height = area.height.saturating_sub(1) as usize;
    let lines: Vec<Line> = wizard
        .log
        .iter()
        .rev()
        .take(height)
        .rev()
        .map(|line| {
            // Diagnoses stand out from the stream of log lines.
            let alarming = [
                "FATAL",
                "ERROR",
                "PANIC",
                "Permission denied",
                "No space left",
            ]
            .iter()
            .any(|w| line.contains(w));
            let style = if alarming && color {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else if alarming {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            Line::from(Span::styled(format!("  {line}"), style))
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().title(" log ")),
        area,
    );
}
