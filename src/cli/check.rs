//! `walwarden check`: the health report for people (one line per client)
//! or for machines (`--json`, schema in assets/check-schema.json), with the
//! monitoring-plugin exit status.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};

use crate::archive::catalog::{self, ScanOptions};
use crate::checks::health::Status;
use crate::checks::report::{CheckReport, ClientReport};
use crate::config::Config;
use crate::display::{age_text, time_text};
use crate::pg::target::TargetView;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the JSON document instead of text
    #[arg(long)]
    pub json: bool,
    /// Also print each problem with its fix
    #[arg(long, short)]
    pub verbose: bool,
    /// Decompress base tarballs whose pg_control facts are not cached yet
    #[arg(long)]
    pub full: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write Prometheus metrics to this file, atomically (node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<std::path::PathBuf>,
    /// Read every WAL file and both base tarballs to their end (results remembered per file)
    #[arg(long)]
    pub deep: bool,
    /// Also read each client's target server over SSH (archive settings, pg_stat_archiver, log failures)
    #[arg(long)]
    pub target: bool,
    /// Only these clients
    pub clients: Vec<String>,
}

/// Runs the check and returns the exit code.
pub fn run(args: &CheckArgs, root: &Path, config: &Config) -> Result<i32> {
    let options = ScanOptions {
        cache: crate::archive::base_cache::default_cache_path(),
        compute_full_facts: args.full,
        only: args.clients.clone(),
    };
    let catalog = catalog::scan(root, &options).wrap_err("cannot scan the backup root")?;
    let now = SystemTime::now();
    let mut report = CheckReport::build(&catalog, config, now);
    if args.deep {
        let mut cache = crate::checks::deep::DeepCache::load(
            crate::checks::deep::default_cache_path().as_deref(),
        );
        for client in &catalog.clients {
            let mut last_said = 0;
            let deep =
                crate::checks::deep::verify_client(client, &mut cache, now, &mut |done, total| {
                    let percent = done * 100 / total.max(1);
                    if !args.json && percent >= last_said + 25 {
                        last_said = percent;
                        eprintln!("deep check of {}: {percent}%", client.name);
                    }
                });
            judge_line(&mut report, client, &deep.unusable);
            report.add_deep(&client.name, deep);
        }
        cache
            .save()
            .wrap_err("cannot remember the deep-check results")?;
    } else {
        // The cheap level: new segments' gzip trailers and first pages (deep reads them all anyway).
        let mut cache = crate::checks::quick::QuickCache::load(
            crate::checks::quick::default_cache_path().as_deref(),
        );
        for client in &catalog.clients {
            report.add_problems(&client.name, cache.check_client(client));
            let unusable = cache.unusable(&crate::checks::quick::QuickInput::borrowed(client));
            judge_line(&mut report, client, &unusable);
        }
        cache
            .save()
            .wrap_err("cannot remember the quick-check results")?;
    }
    if args.target {
        for (client, view) in read_targets(&report, config)? {
            report.add_target(&client, view);
        }
    }
    if let Some(history) = crate::ops::drill::default_history_path() {
        report.add_drills(&crate::ops::drill::load_history(&history), config);
    }
    if let Some(path) = &args.textfile {
        let metrics = crate::checks::metrics::prometheus(&report);
        crate::store::write_atomically(path, metrics.as_bytes(), crate::store::SHARED)
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    match (args.json, args.format) {
        (true, _) | (false, Format::Json) => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        (false, Format::Prometheus) => {
            write!(out, "{}", crate::checks::metrics::prometheus(&report))?
        }
        (false, Format::Text) => write_text(&mut out, &report, args.verbose)?,
    }
    Ok(report.exit_code())
}

/// The window as replay would go: cut at the first segment found unusable,
/// with the last commit it brings back.
fn judge_line(
    report: &mut CheckReport,
    client: &crate::archive::catalog::Client,
    unusable: &std::collections::BTreeSet<crate::archive::wal::RawSegmentName>,
) {
    let (line, point) = crate::checks::recovery_point::judge_line(
        client,
        crate::archive::continuity::LineRequest {
            timeline: None,
            unusable: Some(unusable),
        },
    );
    report.set_line(&client.name, &line, point.as_ref());
}

/// Every configured target, read in parallel (one thread each: the reads
/// wait on the network), so one slow server costs one connect timeout.
fn read_targets(report: &CheckReport, config: &Config) -> Result<Vec<(String, TargetView)>> {
    let targets: Vec<(String, crate::config::TargetServer)> = report
        .clients
        .iter()
        .filter_map(|c| Some((c.name.clone(), config.target_for(&c.name)?.clone())))
        .collect();
    let mut views = Vec::with_capacity(targets.len());
    crate::pool::run(
        &targets,
        targets.len(),
        |(_, target)| crate::pg::target::view(target),
        |index, view| views.push((targets[index].0.clone(), view)),
    )?;
    Ok(views)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

pub fn write_text(
    out: &mut impl Write,
    report: &CheckReport,
    verbose: bool,
) -> std::io::Result<()> {
    if report.clients.is_empty() {
        writeln!(
            out,
            "UNKNOWN  no client folders under {}",
            report.root.display()
        )?;
        return Ok(());
    }
    let width = report
        .clients
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for client in &report.clients {
        writeln!(out, "{}", client_line(client, width, report.generated_at))?;
        if let Some(view) = &client.target {
            for line in crate::pg::target::summary_lines(view, report.generated_at) {
                writeln!(out, "    {line}")?;
            }
        }
        if verbose {
            for problem in &client.problems {
                let ack = problem
                    .acknowledged
                    .as_ref()
                    .map(|n| format!(" [acknowledged: {n}]"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "    {} {}: {}{ack}",
                    problem.severity, problem.code, problem.message
                )?;
                writeln!(out, "        fix: {}", problem.fix)?;
            }
        }
    }
    Ok(())
}

fn client_line(client: &ClientReport, width: usize, now: SystemTime) -> String {
    let last = client
        .wal
        .last_arrival
        .map_or("never".to_owned(), |t| age_text(t, now));
    let restorable = client
        .restorable_to
        .map_or("not restorable".to_owned(), |t| {
            format!("restorable to {}", time_text(t))
        });
    let counted: Vec<&str> = client
        .problems
        .iter()
        .filter(|p| p.counts())
        .map(|p| p.code.as_str())
        .collect();
    let problems = if counted.is_empty() {
        String::new()
    } else {
        let mut unique = counted.clone();
        unique.dedup();
        format!("  problems: {}", unique.join(", "))
    };
    let status = match client.status {
        Status::Ok => "OK",
        other => other.label(),
    };
    let proven = client.deep.as_ref().map_or(String::new(), |d| {
        let manifest = match d.manifest_verified {
            Some(true) => ", base matches its manifest",
            Some(false) => ", base differs from its manifest",
            None => "",
        };
        format!(
            "  verified through {}{manifest}",
            d.verified_through.as_deref().unwrap_or("nothing")
        )
    });
    format!(
        "{status:<7}  {:<width$}  {:>4} segments  last WAL {last:<12}  {restorable}{proven}{problems}",
        client.name, client.wal.segments
    )
}
