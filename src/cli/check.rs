//! `walwarden check`: the health report for people (one line per client)
//! or for machines (`--json`, schema in assets/check-schema.json), with the
//! monitoring-plugin exit status.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};

use crate::archive::catalog::{self, Catalog, ScanOptions};
use crate::checks::health::Status;
use crate::checks::jobs;
use crate::checks::quick::QuickInput;
use crate::checks::report::{CheckReport, ClientFacts, ClientReport};
use crate::config::Config;
use crate::display::age_text;
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
    // Refused before anything is read: the textfile may never land in the archive.
    if let Some(path) = &args.textfile {
        crate::store::guard::check_write(path, "--textfile").map_err(|refused| {
            super::failure::Failure::new(refused.to_string()).hint(
                "write the metrics where node_exporter reads them, outside the backup root \
                 (Debian: /var/lib/prometheus/node-exporter/walwarden.prom)",
            )
        })?;
    }
    let options = ScanOptions {
        cache: crate::archive::base_cache::default_cache_path(),
        compute_full_facts: args.full,
        only: args.clients.clone(),
    };
    let catalog = catalog::scan(root, &options).map_err(super::catalog_failure)?;
    let now = SystemTime::now();
    let mut deep = HashMap::new();
    let mut quick = HashMap::new();
    if args.deep {
        let mut said: (String, u64) = (String::new(), 0);
        let reports = jobs::deep_check(&catalog.clients, now, &mut |client, done, total| {
            if said.0 != client {
                said = (client.to_owned(), 0);
            }
            let percent = done * 100 / total.max(1);
            if !args.json && percent >= said.1 + 25 {
                said.1 = percent;
                eprintln!(
                    "deep check of {}: {percent}%",
                    crate::display::escape_text(client)
                );
            }
        })?;
        deep.extend(reports);
    } else {
        // The cheap level: new segments' gzip trailers and first pages (deep reads them all anyway).
        let inputs: Vec<QuickInput> = catalog.clients.iter().map(QuickInput::borrowed).collect();
        let checked = jobs::quick_check(&inputs);
        checked
            .remembered
            .wrap_err("cannot remember the quick-check results")?;
        quick.extend(checked.findings);
    }
    let targets: HashMap<String, TargetView> = if args.target {
        read_targets(&catalog, config)?.into_iter().collect()
    } else {
        HashMap::new()
    };
    let drills = crate::checks::drills::default_history_path()
        .map(|history| crate::checks::drills::load_history(&history))
        .unwrap_or_default();
    let report = CheckReport::assemble(&catalog, config, now, |name| ClientFacts {
        quick: quick.get(name),
        deep: deep.get(name),
        target: targets.get(name),
        drills: &drills,
    });
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

/// Every configured target, read in parallel (one thread each: the reads
/// wait on the network), so one slow server costs one connect timeout.
fn read_targets(catalog: &Catalog, config: &Config) -> Result<Vec<(String, TargetView)>> {
    let targets: Vec<(String, crate::config::TargetServer)> = catalog
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

/// The report for people. Names and messages quote what the archive holds:
/// everything is escaped once, as written (`display::escape_text`).
pub fn write_text(
    out: &mut impl Write,
    report: &CheckReport,
    verbose: bool,
) -> std::io::Result<()> {
    let mut text = Vec::new();
    report_text(&mut text, report, verbose)?;
    out.write_all(crate::display::escape_text(&String::from_utf8_lossy(&text)).as_bytes())
}

fn report_text(out: &mut Vec<u8>, report: &CheckReport, verbose: bool) -> std::io::Result<()> {
    if report.clients.is_empty() {
        writeln!(
            out,
            "UNKNOWN  no client folders under {}",
            crate::display::escape_path(&report.root)
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
            if let Some(rto) = &client.rto {
                writeln!(out, "    restore time: {}", rto.text())?;
            }
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
    let last = match client.wal.last_arrival {
        Some(t) => age_text(t, now),
        None if client.wal.unreadable => "unknown".to_owned(),
        None => "never".to_owned(),
    };
    let segments = if client.wal.unreadable {
        "?".to_owned()
    } else {
        client.wal.segments.to_string()
    };
    let restorable = client.restorable_text();
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
        "{status:<7}  {:<width$}  {segments:>4} segments  last WAL {last:<12}  {restorable}{proven}{problems}",
        client.name
    )
}
