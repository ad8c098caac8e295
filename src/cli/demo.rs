//! `walwarden demo [DIR]`: builds a demo backup root with eight clients in
//! every state (ok, warning, critical, unknown), keeps one client receiving
//! segments, and opens the dashboard on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};

use crate::config::Config;
use crate::demo::{build_demo, feed_live_client};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to build the demo (kept afterwards); a temporary folder when omitted
    pub dir: Option<PathBuf>,
    /// Seconds between two segments of the live client
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// Build the root, print its path and exit without opening the dashboard
    #[arg(long)]
    pub no_tui: bool,
}

pub fn run(args: &DemoArgs) -> Result<i32> {
    let temporary;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new()
                .prefix("walwarden-demo-")
                .tempdir()?;
            temporary.path().to_owned()
        }
    };
    let demo = build_demo(&dir, SystemTime::now())
        .wrap_err_with(|| format!("cannot build the demo in {}", dir.display()))?;
    if args.no_tui {
        println!(
            "demo root: {}\nconfig:    {}",
            demo.root.display(),
            demo.config.display()
        );
        return Ok(0);
    }
    super::need_a_terminal(
        "the demo's dashboard",
        "walwarden demo DIR --no-tui (builds the demo root and prints where)",
    )?;
    let config = Config::load(&demo.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed_live_client(&demo, args.every, stop.clone());
    let result = crate::tui::run(demo.root.clone(), config, crate::tui::Options::default());
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    result.map(|_| 0)
}
