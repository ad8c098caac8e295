//! The new-client screen: the form, then the plan (each action with its
//! command), the confirmation, the results, and the target's lines to paste.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::keymap::{self, Scope};
use crate::tui::onboarding::{Field, Onboarding, Phase};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(screen) = &app.onboarding else {
        return;
    };
    let state = match &screen.phase {
        Phase::Form => "form",
        Phase::Planning => "planning…",
        Phase::Review(_) => "review",
        Phase::Applying(_) => "applying…",
        Phase::Done { ok: true, .. } => "done",
        Phase::Done { ok: false, .. } => "FAILED",
    };
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        format!(" new client · {state} "),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    let mut lines = form_lines(screen, &app.root.display().to_string());
    match &screen.phase {
        Phase::Form | Phase::Planning => {
            lines.push(Line::from(keymap::hint_line(Scope::NewClientForm)))
        }
        Phase::Review(planned) | Phase::Applying(planned) => {
            lines.push(bold("On this backup server"));
            if planned.actions.is_empty() {
                lines.push(Line::from(
                    "  nothing to change: folders, user, modes and key are already right",
                ));
            }
            for (i, action) in planned.actions.iter().enumerate() {
                lines.push(Line::from(format!("  {}. {action}", i + 1)));
                lines.push(Line::from(format!("       $ {}", action.as_command())));
            }
            lines.push(Line::default());
            if let Some(warning) = &planned.warning {
                lines.push(Line::from(Span::styled(
                    format!("  WARNING: {warning}"),
                    Style::new().add_modifier(Modifier::BOLD),
                )));
                lines.push(Line::default());
            }
            if !planned.needs_root.is_empty() {
                lines.push(Line::from(Span::styled(
                    "  These actions need root: run walwarden with sudo to apply them (Esc back).",
                    Style::new().add_modifier(Modifier::BOLD),
                )));
            } else if matches!(screen.phase, Phase::Review(_)) {
                lines.push(Line::from(Span::styled(
                    format!(
                        "  Apply {} changes and run the copy test? {}",
                        planned.actions.len(),
                        keymap::hint_line(Scope::NewClientReview)
                    ),
                    Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
                )));
            }
            lines.push(Line::default());
            lines.extend(
                planned
                    .instructions
                    .lines()
                    .map(|l| Line::from(l.to_owned())),
            );
            lines.push(Line::default());
            lines.push(Line::from(format!(
                "(`walwarden setup {} --dry-run` prints these lines unwrapped, for pasting)",
                screen.text.client.trim()
            )));
        }
        Phase::Done {
            lines: results,
            instructions,
            ..
        } => {
            lines.push(bold("Results"));
            lines.extend(results.iter().map(|l| Line::from(format!("  {l}"))));
            lines.push(Line::default());
            lines.extend(instructions.lines().map(|l| Line::from(l.to_owned())));
            lines.push(Line::default());
            lines.push(Line::from(keymap::hint_line(Scope::Done)));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

fn bold(text: &str) -> Line<'static> {
    Line::from(Span::styled(
        text.to_owned(),
        Style::new().add_modifier(Modifier::BOLD),
    ))
}

fn form_lines(screen: &Onboarding, root: &str) -> Vec<Line<'static>> {
    let field = |label: &str, value: &str, hint: &str, which: Field| {
        let focused = screen.focus == which && screen.phase == Phase::Form;
        let marker = if focused { "›" } else { " " };
        let shown = if value.is_empty() {
            format!("({hint})")
        } else if focused {
            format!("{value}▏")
        } else {
            value.to_owned()
        };
        let style = if focused {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        Line::from(vec![
            Span::raw(format!("{marker} {label:<22}")),
            Span::styled(shown, style),
        ])
    };
    let mut lines = vec![
        Line::from(format!(
            "Onboard a client under {root}: its folders, its own user, mode 700, the target's key."
        )),
        Line::default(),
        field(
            "client",
            &screen.text.client,
            "its folder name",
            Field::Client,
        ),
        field(
            "target's public key",
            &screen.text.key_file,
            "optional: the target postgres user's .pub file",
            Field::KeyFile,
        ),
        field(
            "backup host",
            &screen.text.backup_host,
            "how the target reaches this server; empty: this host's name",
            Field::BackupHost,
        ),
        field(
            "user's home",
            &screen.text.home,
            "where its authorized_keys lives; empty: /home/USER",
            Field::Home,
        ),
        Line::default(),
    ];
    if let Some(error) = &screen.error {
        lines.push(Line::from(Span::styled(
            format!("  {error}"),
            Style::new().add_modifier(Modifier::BOLD),
        )));
        lines.push(Line::default());
    }
    lines
}
