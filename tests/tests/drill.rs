//! `mc-restore drill` against real services (issue 7): a drill restores into a private scratch
//! mongod, verifies against the source at the restored cluster time, and reports in JSON,
//! Markdown and HTML (parsed here); sabotage (a tampered segment, a missing segment, a wrong
//! expected hash) and a scratch target that is the source itself each fail with the right exit
//! code and a report that says why.

use std::path::Path;

use mc_core::catalog::names::parse_oplog_key;
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{drill_phases, repo_paths, show, Captured};
use mc_tests::*;
use mongodb::bson::{doc, Document};

fn write_policy(dir: &Path, source_id: &str) -> std::path::PathBuf {
    mc_tests::agent::write_test_policy(dir, "drill-test", source_id, "MC_TEST_MONGODB_URI", "")
}

fn drill(policy: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_bin("mc-restore"))
        .arg("drill")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .env("MC_TEST_MONGODB_URI", mongodb_uri())
        .output()
        .expect("mc-restore runs")
}

/// Parses the page as XML (the report is written well-formed) and returns its text.
fn parse_html(html: &str) -> String {
    let mut text = String::new();
    let mut depth: i32 = 0;
    for token in xmlparser::Tokenizer::from(html) {
        match token.unwrap_or_else(|e| panic!("the HTML report does not parse: {e}")) {
            xmlparser::Token::ElementStart { .. } => depth += 1,
            xmlparser::Token::ElementEnd { end, .. }
                if !matches!(end, xmlparser::ElementEnd::Open) =>
            {
                depth -= 1
            }
            xmlparser::Token::Text { text: t } => text.push_str(t.as_str()),
            _ => {}
        }
    }
    assert_eq!(depth, 0, "every element of the HTML report is closed");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drill_passes_reports_and_fails_on_sabotage() {
    let client = mongo_client().await;
    let db_name = unique_db("drill");
    let db = client.database(&db_name);
    db.collection::<Document>("candidates")
        .insert_many(
            (0..300)
                .map(|i| doc! {"_id": i, "name": format!("c{i}"), "score": i % 7})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    db.collection::<Document>("archive")
        .insert_many((0..40).map(|i| doc! {"_id": i}).collect::<Vec<_>>())
        .await
        .unwrap();
    let source_id = unique_name("drill").to_lowercase();
    let cap = Captured::start(&source_id).await;
    cap.snapshot(&db_name).await;
    for burst in 0..3 {
        for i in 0..100 {
            db.collection::<Document>("candidates")
                .update_one(
                    doc! {"_id": i},
                    doc! {"$inc": {"score": 1}, "$set": {"burst": burst}},
                )
                .await
                .unwrap();
        }
        db.collection::<Document>("interviews")
            .insert_one(doc! {"candidate": burst, "at": burst})
            .await
            .unwrap();
        cap.settle().await;
    }
    let (dir, _repo) = cap.finish().await;
    let policy = write_policy(dir.path(), &source_id);
    let scratch = PrivateReplSet::start(Default::default()).await;
    let out_dir = dir.path().join("reports");
    let ns = format!("{db_name}.*");

    // A passing drill.
    let out = drill(
        &policy,
        &[
            "--scratch",
            &scratch.uri(),
            "--ns",
            &ns,
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "pass", "{report:#}");
    for field in [
        "id",
        "started",
        "finished",
        "restored_to",
        "snapshot",
        "scratch",
        "command",
        "repository_key",
    ] {
        assert!(
            report[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} filled: {report:#}"
        );
    }
    assert!(report["rto"]["measured_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["rto"]["projected_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["rpo"]["measured_seconds"].as_f64().is_some());
    assert_eq!(report["volumes"]["documents"], 340, "{report:#}");
    assert!(
        report["volumes"]["oplog_entries_replayed"]
            .as_u64()
            .unwrap()
            >= 303
    );
    assert_eq!(
        drill_phases(&report),
        ["plan", "prepare", "load", "replay", "indexes", "verify", "cleanup"]
    );
    let checks = report["verification"].as_array().unwrap();
    let candidates = checks
        .iter()
        .find(|c| c["ns"] == format!("{db_name}.candidates"))
        .expect("candidates verified");
    assert_eq!(candidates["method"], "source-at-T");
    assert_eq!(candidates["status"], "match");
    assert!(
        checks
            .iter()
            .any(|c| c["ns"] == format!("{db_name}.interviews")),
        "{checks:?}"
    );
    // The scratch target is clean again.
    assert!(!scratch
        .node_client(0)
        .list_database_names()
        .await
        .unwrap()
        .contains(&db_name));
    // The three local forms; the HTML parses and says the verdict first.
    let id = report["id"].as_str().unwrap();
    let html = std::fs::read_to_string(out_dir.join(format!("{id}.html"))).unwrap();
    let text = parse_html(&html);
    assert!(
        text.trim_start().starts_with("Drill") || text.contains("PASS"),
        "{text}"
    );
    assert!(
        html.contains("id=\"verdict\">PASS<") && html.contains("<svg"),
        "verdict and timeline"
    );
    let md = std::fs::read_to_string(out_dir.join(format!("{id}.md"))).unwrap();
    assert!(
        md.starts_with(&format!("# Recovery drill {id}: PASS")),
        "{md}"
    );
    // Read back from the repository.
    let out = drill(&policy, &["list"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(id),
        "{}",
        show(&out)
    );
    let out = drill(&policy, &["show", id]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("## Verification"),
        "{}",
        show(&out)
    );

    // Without the source: what replay left untouched is checked against the snapshot's record,
    // what it changed is said to be unverifiable, never guessed.
    let out = drill(
        &policy,
        &[
            "--scratch",
            &scratch.uri(),
            "--ns",
            &ns,
            "--no-source",
            "--json",
        ],
    );
    // Without the source, a namespace replay changed cannot be verified: not a full pass.
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_ns = |name: &str| {
        report["verification"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ns"] == format!("{db_name}.{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
    };
    assert_eq!(by_ns("archive")["method"], "snapshot-record");
    assert_eq!(by_ns("archive")["status"], "match", "{report:#}");
    assert_eq!(
        by_ns("candidates")["status"],
        "not_verifiable",
        "{report:#}"
    );
    assert_eq!(report["verdict"], "not_fully_verified", "{report:#}");
    assert!(
        report["reasons"]
            .to_string()
            .contains(&format!("{db_name}.candidates not verified")),
        "{report:#}"
    );

    // A deliberately wrong expected hash: verification fails (exit 3) and the report says where.
    let wrong = format!("{db_name}.candidates={}", "0".repeat(64));
    let out = drill(
        &policy,
        &[
            "--scratch",
            &scratch.uri(),
            "--ns",
            &ns,
            "--expect-sha256",
            &wrong,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "verification_failed");
    assert!(
        report["reasons"]
            .to_string()
            .contains(&format!("{db_name}.candidates differs")),
        "{report:#}"
    );

    // The source's own replica set as scratch: refused before anything is written.
    let out = drill(
        &policy,
        &["--scratch", &mongodb_uri(), "--ns", &ns, "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the source's own replica set"),
        "{}",
        show(&out)
    );

    // A tampered segment: the drill errors (exit 1) naming the object.
    let oplog_dir = repo_paths(dir.path())
        .0
        .join("sources")
        .join(&source_id)
        .join("oplog");
    let mut segments: Vec<(mc_core::format::OplogTs, std::path::PathBuf)> =
        std::fs::read_dir(&oplog_dir)
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                let key = format!("sources/{source_id}/oplog/{}", path.file_name()?.to_str()?);
                parse_oplog_key(&key).map(|(f, _)| (f, path))
            })
            .collect();
    segments.sort();
    let last = segments.last().unwrap().1.clone();
    let original = std::fs::read(&last).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() - 30;
    bytes[at] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    let out = drill(
        &policy,
        &["--scratch", &scratch.uri(), "--ns", &ns, "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "error");
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(report["reasons"].to_string().contains(name), "{report:#}");
    std::fs::write(&last, &original).unwrap();

    // A missing segment: the plan refuses to pretend (exit 1, the reason names the gap).
    let middle = segments[segments.len() / 2].1.clone();
    std::fs::remove_file(&middle).unwrap();
    let out = drill(
        &policy,
        &["--scratch", &scratch.uri(), "--ns", &ns, "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["reasons"].to_string().contains("gap"), "{report:#}");
}

/// The agent runs drills itself from the policy's `drills:` cron schedule and exports the result:
/// `mc_drill_last_success`, `mc_drill_last_rto_seconds`, `mc_drill_last_timestamp_seconds`. A
/// private source replica set keeps the drill small (the agent backs up every database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_drill_fires_from_the_policy_and_updates_metrics() {
    use mc_tests::agent::{free_port, metric_value};
    let source = PrivateReplSet::start(Default::default()).await;
    source
        .node_client(0)
        .database("interviews")
        .collection::<Document>("sessions")
        .insert_many(
            (0..500)
                .map(|i| doc! {"_id": i, "state": "open"})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let scratch = PrivateReplSet::start(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let port = free_port();
    let extra = format!(
        "capture:\n  seal_interval: 300ms\n  max_segment_bytes: 64KiB\n\
drills:\n  schedule: \"*/2 * * * * *\"\n  scratch_uri: {{ env: MC_SCRATCH_URI }}\n\
http:\n  listen: 127.0.0.1:{port}\n"
    );
    let policy_path = mc_tests::agent::write_test_policy(
        dir.path(),
        "scheduled-drill-test",
        "sched",
        "MC_SOURCE_URI",
        &extra,
    );
    let log = dir.path().join("agent.log");
    let (mut agent, passed) = mc_tests::agent::run_until_a_drill_passes(
        &policy_path,
        &source.uri(),
        &scratch.uri(),
        port,
        &log,
    )
    .await;
    assert!(metric_value(&passed, "mc_drills_total").unwrap() >= 1.0);
    assert!(metric_value(&passed, "mc_drill_last_rto_seconds").unwrap() > 0.0);
    let finished = metric_value(&passed, "mc_drill_last_timestamp_seconds").unwrap();
    assert!(
        (chrono::Utc::now().timestamp() as f64 - finished).abs() < 300.0,
        "{finished}"
    );
    // The report is in the repository, readable by `mc-restore drill list`.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("scheduled drill passed"), "{logged}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let status = agent.wait().unwrap();
    assert!(status.success(), "agent exits 0 on SIGTERM: {status:?}");
}
