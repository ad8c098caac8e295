//! The restore's stop-old-instance step over SSH against a real sshd on
//! loopback (Debian's openssh-server, started by each test on a high port
//! with throwaway keys; see support::sshd). A marker file written by the
//! stop command stands in for `pg_ctlcluster ... stop`. Fails, not skips,
//! without sshd.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::sshd::{TestSshd, free_port};
use walwarden::config::TargetServer;
use walwarden::ops::restore::journal::{Entry, Journal, Outcome};
use walwarden::ops::restore::request::RestoreRequest;
use walwarden::ops::restore::steps::{self, Driver, StepKind};
use walwarden::pg::remote::{self, RemoteError};

/// Answers every confirmation with `answer` and keeps what the engine reported.
struct Recorder {
    answer: bool,
    questions: Vec<String>,
    steps: Vec<(StepKind, Outcome, String)>,
    commands: Vec<String>,
    progress: Vec<String>,
}

impl Recorder {
    fn answering(answer: bool) -> Recorder {
        Recorder {
            answer,
            questions: Vec::new(),
            steps: Vec::new(),
            commands: Vec::new(),
            progress: Vec::new(),
        }
    }
}

impl Driver for Recorder {
    fn confirm(&mut self, question: &str) -> bool {
        self.questions.push(question.to_owned());
        self.answer
    }
    fn confirm_typed(&mut self, prompt: &str, _expected: &str) -> bool {
        self.questions.push(prompt.to_owned());
        false
    }
    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        self.steps.push((step, outcome, detail.to_owned()));
    }
    fn command(&mut self, text: &str) {
        self.commands.push(text.to_owned());
    }
    fn progress(&mut self, _step: StepKind, text: &str) {
        self.progress.push(text.to_owned());
    }
}

fn request(data_dir: PathBuf, target: TargetServer, dry_run: bool) -> RestoreRequest {
    RestoreRequest {
        data_dir,
        target_time: None,
        timeline: None,
        pg_bin: None,
        os_user: "postgres".into(),
        settings: Vec::new(),
        dry_run,
        purge: false,
        replay_timeout: Duration::from_secs(60),
        local: Default::default(),
        forced: Vec::new(),
        resume: false,
        target: Some(target),
        helper_exe: PathBuf::from(env!("CARGO_BIN_EXE_walwarden")),
    }
}

/// A stop command that leaves a marker (and says which major it was given).
fn marker_command(marker: &Path) -> String {
    format!(
        "touch {} && echo stopped cluster {{major}}",
        marker.display()
    )
}

/// Runs the step alone and returns its single journal entry.
fn stop_step(request: &RestoreRequest, driver: &mut Recorder) -> Entry {
    let journal = steps::stop_old_instance(request, 15, driver).expect("the step never fails");
    let entries = Journal::read(&journal).expect("read the journal");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = entries.into_iter().next().unwrap();
    assert_eq!(entry.step, "stop-remote");
    assert_eq!(
        driver.steps,
        vec![(
            StepKind::StopRemote,
            entry.outcome.clone(),
            entry.detail.clone()
        )],
        "the driver saw what the journal holds"
    );
    entry
}

#[test]
fn run_remote_runs_a_command_and_reports_its_failure() {
    let sshd = TestSshd::start();
    let target = sshd.target();
    let output = remote::run_remote_blocking(&target, "echo hello")
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(output.stdout, "hello\n");

    let error = remote::run_remote_blocking(&target, "echo oops >&2; exit 3").unwrap_err();
    match &error {
        RemoteError::CommandFailed { status, stderr, .. } => {
            assert_eq!(status, "exit 3");
            assert_eq!(stderr, "oops");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
}

#[test]
fn run_remote_works_from_a_blocking_task_and_from_async_code() {
    let sshd = TestSshd::start();
    let target = sshd.target();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The TUI runs the engine like this: a runtime exists, but on another thread.
    let blocking = target.clone();
    let from_blocking = runtime
        .block_on(async {
            tokio::task::spawn_blocking(move || {
                remote::run_remote_blocking(&blocking, "echo from-blocking")
            })
            .await
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(from_blocking.stdout, "from-blocking\n");
    let from_async = runtime
        .block_on(remote::run_remote(&target, "echo from-async"))
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(from_async.stdout, "from-async\n");
}

#[test]
fn the_stop_step_runs_the_stop_command_after_confirmation_and_journals_done() {
    let sshd = TestSshd::start();
    let marker = sshd.tmp.path().join("stopped");
    let mut target = sshd.target();
    target.stop_command = marker_command(&marker);
    let request = request(sshd.tmp.path().join("data"), target, false);
    let mut driver = Recorder::answering(true);
    let entry = stop_step(&request, &mut driver);
    assert_eq!(
        entry.outcome,
        Outcome::Done,
        "{}\nsshd log:\n{}",
        entry.detail,
        sshd.log()
    );
    assert!(marker.exists(), "the stop command ran");
    assert!(
        entry.detail.contains("stopped cluster 15"),
        "the output, with the backup's major: {}",
        entry.detail
    );
    assert_eq!(
        driver.questions,
        vec![format!(
            "Stop PostgreSQL on 127.0.0.1:{} with `touch {} && echo stopped cluster 15`?",
            sshd.port,
            marker.display()
        )]
    );
    assert!(
        driver.commands[0].starts_with("ssh ")
            && driver.commands[0].contains("StrictHostKeyChecking=yes"),
        "{:?}",
        driver.commands
    );
}

#[test]
fn a_declined_or_dry_run_stop_runs_nothing() {
    // No server at all: neither may even connect.
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("stopped");
    let mut target = TargetServer::new("127.0.0.1", "postgres");
    target.port = free_port();
    target.stop_command = marker_command(&marker);

    let declined = request(marker_dir.path().join("data"), target.clone(), false);
    let mut driver = Recorder::answering(false);
    let entry = stop_step(&declined, &mut driver);
    assert_eq!(entry.outcome, Outcome::Skipped);
    assert!(entry.detail.starts_with("declined"), "{}", entry.detail);
    assert!(driver.commands.is_empty());

    let dry = request(marker_dir.path().join("dry"), target, true);
    let mut driver = Recorder::answering(true);
    let journal = steps::stop_old_instance(&dry, 15, &mut driver).unwrap();
    assert!(!journal.exists(), "a dry run writes no journal");
    assert!(driver.questions.is_empty(), "a dry run asks nothing");
    assert_eq!(driver.steps[0].1, Outcome::DryRun);
    let remote_part = format!("'touch {} && echo stopped cluster 15'", marker.display());
    assert!(
        driver.commands[0].starts_with("ssh ") && driver.commands[0].ends_with(&remote_part),
        "{:?}",
        driver.commands
    );
    assert!(!marker.exists());
}

#[test]
fn a_host_key_mismatch_is_refused_and_nothing_runs() {
    let sshd = TestSshd::start();
    let marker = sshd.tmp.path().join("stopped");
    let mut target = sshd.target();
    target.stop_command = marker_command(&marker);
    target.known_hosts = Some(sshd.wrong_known_hosts.clone());

    let error = remote::run_remote_blocking(&target, "true").unwrap_err();
    assert!(
        matches!(error, RemoteError::HostKeyMismatch { .. }),
        "{error:?}"
    );
    let request = request(sshd.tmp.path().join("data"), target, false);
    let mut driver = Recorder::answering(true);
    let entry = stop_step(&request, &mut driver);
    assert_eq!(entry.outcome, Outcome::Skipped);
    assert!(
        !marker.exists(),
        "nothing ran on a server whose key does not match"
    );
    let expected = format!(
        "REFUSED: host key of 127.0.0.1:{} does not match known_hosts ({}): refusing; if the server was reinstalled, verify and update known_hosts",
        sshd.port,
        sshd.wrong_known_hosts.display()
    );
    assert!(entry.detail.starts_with(&expected), "{}", entry.detail);
    assert!(
        driver.progress.iter().any(|p| p.starts_with("REFUSED")),
        "shown as it happens too: {:?}",
        driver.progress
    );
    // The wrong file is left as it was: strict checking never adds or replaces keys.
    let known = std::fs::read_to_string(&sshd.wrong_known_hosts).unwrap();
    assert_eq!(known.lines().count(), 1);
    assert!(!known.contains(&public_host_key(&sshd)));
}

#[test]
fn an_unknown_host_key_and_a_refused_login_are_skipped_with_the_reason() {
    let sshd = TestSshd::start();
    let marker = sshd.tmp.path().join("stopped");
    let empty = sshd.tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut unknown = sshd.target();
    unknown.stop_command = marker_command(&marker);
    unknown.known_hosts = Some(empty.clone());
    let entry = stop_step(
        &request(sshd.tmp.path().join("a"), unknown, false),
        &mut Recorder::answering(true),
    );
    assert_eq!(entry.outcome, Outcome::Skipped);
    assert!(
        entry.detail.starts_with("REFUSED: host key of")
            && entry.detail.contains("is not in known_hosts"),
        "{}",
        entry.detail
    );
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "an unknown key is never added"
    );

    let mut stranger = sshd.target();
    stranger.stop_command = marker_command(&marker);
    stranger.identity = Some(sshd.tmp.path().join("wrong_ed25519"));
    let entry = stop_step(
        &request(sshd.tmp.path().join("b"), stranger, false),
        &mut Recorder::answering(true),
    );
    assert_eq!(entry.outcome, Outcome::Skipped);
    assert!(
        entry.detail.contains("refused the login") && entry.detail.contains("Permission denied"),
        "{}",
        entry.detail
    );
    assert!(!marker.exists());
}

#[test]
fn an_unreachable_target_is_skipped_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = TargetServer::new("127.0.0.1", "postgres");
    target.port = free_port();
    target.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let entry = stop_step(
        &request(dir.path().join("data"), target, false),
        &mut Recorder::answering(true),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(entry.outcome, Outcome::Skipped);
    assert!(
        entry.detail.contains("is unreachable") && entry.detail.contains("Connection refused"),
        "{}",
        entry.detail
    );
}

fn public_host_key(sshd: &TestSshd) -> String {
    let text = std::fs::read_to_string(sshd.tmp.path().join("host_ed25519.pub")).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}
