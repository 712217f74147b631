//! `--end-to-end`: `mc-restore --at latest` as the process a user runs (start, plan, load,
//! replay, index builds, exit), timed from outside with `/usr/bin/time` (wall, CPU, peak RSS),
//! with the phases its `--json` summary reports. Several binaries (`--mc-restore LABEL=PATH`)
//! take turns in each round, so their figures come from the same conditions; each restores
//! into a fresh database on the target, checked (document counts and index names per
//! collection) against the source, then dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use futures::TryStreamExt;
use mc_tests::bench::{loadavg, machine_description, percentile};
use mongodb::bson::{doc, Document};
use mongodb::Client;

/// One process run's figures.
struct Run {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    phases: Vec<(String, f64)>,
}

/// What the end-to-end rounds need.
pub struct EndToEnd<'a> {
    pub binaries: Vec<(String, PathBuf)>,
    pub rounds: usize,
    pub extra_args: Vec<String>,
    pub repo_dir: &'a Path,
    pub source_id: &'a str,
    pub source: &'a Client,
    pub db: &'a str,
    pub target_uri: &'a str,
    pub documents: u64,
    pub mb: f64,
}

impl EndToEnd<'_> {
    pub async fn run(&self) -> anyhow::Result<()> {
        let target = Client::with_uri_str(self.target_uri).await?;
        let want = shape(self.source, self.db).await?;
        let into = format!("{}_r", self.db);
        let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        let started_load = loadavg();
        for round in 1..=self.rounds {
            for (label, bin) in &self.binaries {
                target.database(&into).drop().await?;
                let run = self.once(bin, &into).await;
                let got = shape(&target, &into).await;
                target.database(&into).drop().await?;
                let run = run.with_context(|| format!("round {round}, {label}"))?;
                let got = got?;
                if got != want {
                    bail!("round {round}, {label}: restored {got:?}, the source has {want:?}");
                }
                eprintln!(
                    "round {round} {label}: {:.2} s wall, {:.2} s CPU, {:.0} MiB peak RSS; {}",
                    run.wall,
                    run.cpu,
                    run.rss_mib,
                    run.phases
                        .iter()
                        .map(|(n, s)| format!("{n} {s:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                runs.entry(label.clone()).or_default().push(run);
            }
        }
        self.print(&runs, &started_load);
        Ok(())
    }

    async fn once(&self, bin: &Path, into: &str) -> anyhow::Result<Run> {
        let times = tempfile::NamedTempFile::new()?;
        let t = Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%e %U %S %M")
            .arg("-o")
            .arg(times.path())
            .arg(bin)
            .args(["--at", "latest", "--source", self.source_id, "--json"])
            .arg("--repo")
            .arg(self.repo_dir.join("repo"))
            .arg("--keyring")
            .arg(self.repo_dir.join("keyring"))
            .args(["--target", self.target_uri])
            .args(["--ns", &format!("{}.*", self.db)])
            .args(["--ns-from", self.db, "--ns-to", into])
            .args(&self.extra_args)
            .env_remove("MC_REPO")
            .env_remove("MC_KEYRING_FILE")
            .output()
            .with_context(|| format!("running {} under /usr/bin/time", bin.display()))?;
        let wall = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let times = std::fs::read_to_string(times.path())?;
        let f: Vec<f64> = times
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let [_, user, system, rss_kib] = f[..] else {
            bail!("unexpected /usr/bin/time output: {times}");
        };
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{}'s --json summary", bin.display()))?;
        let phases = summary["phases"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or_default().to_owned(),
                            p["seconds"].as_f64().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Run {
            wall,
            cpu: user + system,
            rss_mib: rss_kib / 1024.0,
            phases,
        })
    }

    fn print(&self, runs: &BTreeMap<String, Vec<Run>>, started_load: &str) {
        println!(
            "mc-bench-restore --end-to-end: {} documents ({:.1} MB of BSON) restored by `mc-restore --at latest` as a process, {} rounds{}",
            self.documents,
            self.mb,
            self.rounds,
            if self.extra_args.is_empty() {
                String::new()
            } else {
                format!(" (with {})", self.extra_args.join(" "))
            }
        );
        println!(
            "machine: {}; load average {started_load} before, {} after",
            machine_description(),
            loadavg()
        );
        println!();
        println!("| binary | wall s (min / median / max) | CPU s (median) | peak RSS MiB (max) | phases, median s |");
        println!("|---|---|---|---|---|");
        let mut medians = Vec::new();
        for (label, rs) in runs {
            let mut wall: Vec<f64> = rs.iter().map(|r| r.wall).collect();
            let mut cpu: Vec<f64> = rs.iter().map(|r| r.cpu).collect();
            let rss = rs.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
            let mut names: Vec<&str> = Vec::new();
            for r in rs {
                for (n, _) in &r.phases {
                    if !names.contains(&n.as_str()) {
                        names.push(n);
                    }
                }
            }
            let phases: Vec<String> = names
                .iter()
                .map(|n| {
                    let mut v: Vec<f64> = rs
                        .iter()
                        .filter_map(|r| r.phases.iter().find(|(m, _)| m == n).map(|(_, s)| *s))
                        .collect();
                    format!("{n} {:.2}", percentile(&mut v, 50.0))
                })
                .collect();
            let median = percentile(&mut wall, 50.0);
            medians.push((label.clone(), median));
            println!(
                "| {label} | {:.2} / {median:.2} / {:.2} | {:.2} | {rss:.0} | {} |",
                percentile(&mut wall, 0.0),
                percentile(&mut wall, 100.0),
                percentile(&mut cpu, 50.0),
                phases.join(", ")
            );
        }
        if let [(a, ta), (b, tb), ..] = &medians[..] {
            println!();
            println!("median wall ratio {a} / {b}: {:.2}", ta / tb);
        }
    }
}

/// Per collection of `db`: its document count and index names, sorted.
async fn shape(client: &Client, db: &str) -> anyhow::Result<BTreeMap<String, (u64, Vec<String>)>> {
    let db = client.database(db);
    let mut out = BTreeMap::new();
    for name in db.list_collection_names().await? {
        let coll = db.collection::<Document>(&name);
        let count = coll.count_documents(doc! {}).await?;
        let mut indexes: Vec<String> = coll
            .list_indexes()
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .filter_map(|i| i.options.and_then(|o| o.name))
            .collect();
        indexes.sort();
        out.insert(name, (count, indexes));
    }
    Ok(out)
}
