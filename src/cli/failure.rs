//! Expected failures and how they read: `error: <what>` and, when one helps,
//! `hint: <fix>`, with a documented exit code.
//!
//! A refusal or bad input is not a bug: it never shows a source location, a
//! backtrace or "Run with RUST_BACKTRACE" (not even with RUST_BACKTRACE=1 in
//! the environment). Those belong to panics (color-eyre's panic hook, kept
//! for real bugs) and to the `--log-file` debug log, which gets the whole
//! color-eyre report of every error.

use std::fmt;
use std::io::IsTerminal;

use color_eyre::eyre::Report;

/// A failure the command expected: a refusal, bad input, something missing.
/// Subcommands return it inside an eyre `Report` (it may be wrapped in
/// context); `main` renders it plainly with [`render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    message: String,
    hint: Option<String>,
    code: Option<i32>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            hint: None,
            code: None,
        }
    }

    /// What to do about it, printed as `hint: ...`.
    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// The exit code, when it is not the subcommand's code for "could not run".
    pub fn code(mut self, code: i32) -> Failure {
        self.code = Some(code);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Whether stderr may carry colour: a terminal, `NO_COLOR` unset or empty
/// (<https://no-color.org>), and not `TERM=dumb`.
pub fn stderr_styled() -> bool {
    std::io::stderr().is_terminal() && colour_allowed_by_env()
}

fn colour_allowed_by_env() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// The lines an error report prints and the code to exit with.
/// `default_code` is the subcommand's code for "could not run".
pub fn render(report: &Report, default_code: i32, styled: bool) -> (String, i32) {
    let failure = report.chain().find_map(|e| e.downcast_ref::<Failure>());
    let mut parts: Vec<String> = Vec::new();
    for cause in report.chain() {
        let text = cause.to_string();
        // A context that repeats its cause (eyre!(error) of a Display) is said once.
        if parts.last().is_some_and(|last| last.ends_with(&text)) || text.is_empty() {
            continue;
        }
        parts.push(text);
    }
    let (error_label, hint_label) = if styled {
        ("\x1b[1;31merror:\x1b[0m", "\x1b[1;36mhint:\x1b[0m")
    } else {
        ("error:", "hint:")
    };
    // Messages quote names from the archive, tarballs and servers: data,
    // never terminal commands (the labels' own colour is added after).
    let escape = crate::display::escape_text;
    let mut text = format!("{error_label} {}", escape(&parts.join(": ")));
    if let Some(hint) = failure.and_then(Failure::hint_text) {
        text.push_str(&format!("\n{hint_label} {}", escape(hint)));
    }
    let code = failure.and_then(Failure::exit_code).unwrap_or(default_code);
    (text, code)
}

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, and lone ESC pairs),
/// for the debug log: color-eyre's reports are themed for a terminal.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // A CSI sequence runs to its final byte; any other escape drops one character.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use color_eyre::eyre::{WrapErr, eyre};

    #[test]
    fn a_failure_in_context_keeps_its_hint_and_code() {
        let report: Report = Err::<(), _>(
            Failure::new("the data directory is inside the root")
                .hint("pick another --data-dir")
                .code(3),
        )
        .wrap_err("preflight refused the restore of acme")
        .unwrap_err();
        let (text, code) = render(&report, 1, false);
        assert_eq!(
            text,
            "error: preflight refused the restore of acme: the data directory is inside the root\n\
             hint: pick another --data-dir"
        );
        assert_eq!(code, 3);
    }

    #[test]
    fn a_plain_error_gets_the_commands_code_and_no_hint() {
        let report = eyre!("no such file").wrap_err("cannot scan the backup root");
        let (text, code) = render(&report, 2, false);
        assert_eq!(text, "error: cannot scan the backup root: no such file");
        assert_eq!(code, 2);
    }

    #[test]
    fn colour_only_when_styled() {
        let report = Report::new(Failure::new("refused").hint("do this"));
        let (plain, _) = render(&report, 3, false);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        let (coloured, _) = render(&report, 3, true);
        assert!(coloured.contains("\x1b[1;31merror:"), "{coloured:?}");
        assert_eq!(strip_ansi(&coloured), plain);
    }

    #[test]
    fn a_name_in_a_message_cannot_drive_the_terminal() {
        let report = Report::new(
            Failure::new("no client named evil\x1b]0;owned\x07\x1b[2J").hint("see \x1b[31mthis"),
        );
        let (text, _) = render(&report, 3, false);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(text.contains("evil\\x1b]0;owned\\x07\\x1b[2J"), "{text}");
        assert!(text.contains("hint: see \\x1b[31mthis"), "{text}");
    }

    #[test]
    fn strip_ansi_removes_csi_sequences_only() {
        assert_eq!(
            strip_ansi("\x1b[31mLocation:\x1b[0m src/x.rs:\x1b[1;35m12\x1b[0m ok"),
            "Location: src/x.rs:12 ok"
        );
        assert_eq!(strip_ansi("plain ünïcode"), "plain ünïcode");
    }
}
