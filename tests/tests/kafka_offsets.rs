//! Kafka consumer-group offsets against the real broker: the agent's capture running in-process
//! while a producer writes and a consumer group consumes and commits; then `mc-restore
//! kafka-offsets` puts the group back to what it had committed at each recorded moment. Also:
//! active groups are refused by name, unknown groups and points before any capture are clear
//! errors, an unreachable broker fails within the timeout, and capture survives a dead broker.

use std::path::Path;
use std::time::{Duration, Instant};

use mc_tests::agent::{free_port, http_get, write_test_policy};
use mc_tests::kafka::{
    capture_settings, committed_now, create_topic, delete_records_before, members, now_ms, pause,
    spawn_consumer, spawn_producer, temp_repository, wait_for, wait_members, Cmd, KafkaCapture,
    Offsets, PARTITIONS,
};
use mc_tests::restore::{mc_restore, repo_paths, show};
use mc_tests::{kafka_bootstrap, mongodb_uri, unique_name, workspace_bin};
use tokio::sync::watch;

/// The source every capture in this file records for.
const SOURCE: &str = "rs0";

/// Starts Kafka capture of `groups` at `bootstrap` into a fresh repository of its own.
async fn start_capture(bootstrap: &str, groups: Vec<String>) -> (tempfile::TempDir, KafkaCapture) {
    let (dir, repo) = temp_repository().await;
    let settings = capture_settings(bootstrap, groups, SOURCE);
    (dir, KafkaCapture::start(repo, settings, None))
}

/// `--repo` and the keyring path of the repository in `dir`.
fn repo_args(dir: &Path) -> (String, std::path::PathBuf) {
    let (repo, keyring) = repo_paths(dir);
    (repo.display().to_string(), keyring)
}

/// `ms` as an RFC 3339 time with milliseconds, for `--at`.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_restored_to_each_recorded_moment() {
    let topic = unique_name("ko-topic");
    let group = unique_name("ko-group");
    create_topic(&topic).await;
    let (stop_producer, rx) = watch::channel(false);
    let producer = spawn_producer(topic.clone(), rx);
    let (dir, capture) = start_capture(&kafka_bootstrap(), vec![group.clone()]).await;
    let (consumer, consumer_task) =
        spawn_consumer(topic.clone(), group.clone(), unique_name("ko-client"));

    // Wait until the group has committed on every partition, then record three moments.
    let mut recorded: Vec<(i64, Offsets)> = Vec::new();
    let mut last: Offsets = Offsets::new();
    for i in 0..3 {
        // Let the consumer make progress past the previous moment (on every partition).
        let t0 = Instant::now();
        loop {
            let offsets = pause(&consumer).await;
            let progressed = offsets.len() == PARTITIONS as usize
                && offsets
                    .iter()
                    .all(|(k, v)| last.get(k).is_none_or(|old| v > old));
            if progressed {
                // Paused: nothing more is committed until resumed. A capture cycle that starts
                // now sees exactly `offsets`; any T after it and before resuming selects it.
                let paused_at = now_ms();
                capture.cycle_after(paused_at).await;
                let t = now_ms();
                // A cycle stamped at or before `t` may still be reading: resume only once a
                // cycle stamped after `t` has completed (cycles run one after another).
                capture.cycle_after(t).await;
                recorded.push((t, offsets.clone()));
                last = offsets;
                consumer.send(Cmd::Resume).await.unwrap();
                break;
            }
            consumer.send(Cmd::Resume).await.unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the consumer made no progress in 60 s (moment {i})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Capture keeps running while the consumer moves on; its lag is tracked.
    assert_eq!(capture.metrics.kafka.groups_tracked.get(), 1);
    assert!(capture
        .metrics
        .kafka
        .lag
        .lock()
        .unwrap()
        .contains_key(&group));
    let text = mc_agent::metrics::encode(&capture.metrics.registry("rs0"));
    assert!(
        text.contains("mc_kafka_cycle_seconds{source=\"rs0\"} 0."),
        "{text}"
    );
    let status = capture.metrics.status().kafka.expect("Kafka in /status");
    assert!(
        status.cycles >= 6 && status.groups_tracked == 1,
        "{status:?}"
    );
    assert!(status.last_cycle_seconds.is_some() && status.last_cycle.is_some());
    assert!(
        text.contains(&format!(
            "mc_kafka_group_lag{{source=\"rs0\",group=\"{group}\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains("mc_kafka_rpo_seconds{source=\"rs0\"}"),
        "{text}"
    );

    // Stop the consumer (it leaves the group), then capture.
    drop(consumer);
    consumer_task.await.unwrap();
    let _ = stop_producer.send(true);
    producer.await.unwrap();
    wait_members("the group to have no members", &group, 0).await;
    let final_offsets = committed_now(&topic, &group).await;
    capture.stop().await;
    let (repo, keyring) = repo_args(dir.path());
    let bootstrap = kafka_bootstrap();

    // `mc-restore list` shows the offset stream's runs.
    let out = mc_restore(
        &["list", "--repo", &repo, "--source", SOURCE, "--json"],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    let runs = listed["kafka_offsets"]
        .as_array()
        .expect("kafka_offsets runs");
    assert_eq!(runs.len(), 1, "one unbroken run: {listed}");
    assert!(runs[0]["first_ms"].as_i64().unwrap() <= recorded[0].0);

    // A dry run plans and changes nothing.
    let at0 = rfc3339(recorded[0].0);
    let out = kafka_offsets(&at0, &group, &repo, &bootstrap, &["--dry-run"], &keyring);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("GROUP") && stdout.contains("DELTA") && stdout.contains(&topic),
        "{}",
        show(&out)
    );
    assert_eq!(
        committed_now(&topic, &group).await,
        final_offsets,
        "a dry run changed offsets"
    );

    // Restore each moment, newest first then oldest, and compare with what the test committed.
    for (t, want) in recorded.iter().rev().chain(recorded.iter().take(1)) {
        let at = rfc3339(*t);
        let out = kafka_offsets(&at, &group, &repo, &bootstrap, &["--json"], &keyring);
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore at {at}: {}",
            show(&out)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert_eq!(report["committed"], PARTITIONS as u64, "{report}");
        assert_eq!(
            committed_now(&topic, &group).await,
            *want,
            "offsets after restoring to {at}"
        );
    }

    // Retention removed messages the group had not consumed at the oldest moment: the restore
    // commits the partition's new low watermark instead, and says so.
    let (t0, want0) = &recorded[0];
    let ((clamped_topic, clamped_partition), old) = want0.iter().next().unwrap();
    let low = old + 1;
    delete_records_before(clamped_topic, *clamped_partition, low).await;
    let at = rfc3339(*t0);
    let out = kafka_offsets(&at, &group, &repo, &bootstrap, &["--json"], &keyring);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let mut want = want0.clone();
    want.insert((clamped_topic.clone(), *clamped_partition), low);
    assert_eq!(committed_now(&topic, &group).await, want, "clamped restore");
    let warning = format!(
        "{clamped_topic}/{clamped_partition}: recorded offset {old} is below the low watermark {low}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&warning),
        "no clamp warning: {}",
        show(&out)
    );

    // Unknown group: a clear error naming the pattern and the groups recorded.
    let out = kafka_offsets(
        "latest",
        "no-such-group-*",
        &repo,
        &bootstrap,
        &[],
        &keyring,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains("no consumer group recorded")
            && stderr.contains("'no-such-group-*'")
            && stderr.contains(&group),
        "{}",
        show(&out)
    );

    // A point before the first capture: nothing recorded at or before it.
    let out = kafka_offsets(
        "2001-01-01T00:00:00Z",
        &group,
        &repo,
        &bootstrap,
        &[],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no Kafka offsets recorded at or before"),
        "{}",
        show(&out)
    );

    // Broker unreachable: a clear error within the timeout, non-zero exit, nothing hangs.
    let t0 = Instant::now();
    let out = kafka_offsets(
        "latest",
        &group,
        &repo,
        "127.0.0.1:1",
        &["--timeout", "2s"],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach Kafka at 127.0.0.1:1"),
        "{}",
        show(&out)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_group_is_refused_naming_its_members() {
    let topic = unique_name("ka-topic");
    let group = unique_name("ka-group");
    let client_id = unique_name("ka-client");
    create_topic(&topic).await;
    let (stop_producer, rx) = watch::channel(false);
    let producer = spawn_producer(topic.clone(), rx);
    let (dir, capture) = start_capture(&kafka_bootstrap(), vec!["ka-group-*".into()]).await;
    let (consumer, consumer_task) = spawn_consumer(topic.clone(), group.clone(), client_id.clone());
    wait_for("the consumer to commit", Duration::from_secs(60), || {
        let (topic, group) = (topic.clone(), group.clone());
        async move { !committed_now(&topic, &group).await.is_empty() }
    })
    .await;
    capture.cycle_after(now_ms()).await;
    let _ = stop_producer.send(true);
    producer.await.unwrap();
    capture.stop().await;
    let (repo, keyring) = repo_args(dir.path());
    assert!(members(&group).await.contains(&client_id));

    let before = committed_now(&topic, &group).await;
    let out = kafka_offsets("latest", &group, &repo, &kafka_bootstrap(), &[], &keyring);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains(&format!("group {group} has 1 active member"))
            && stderr.contains(&client_id),
        "{}",
        show(&out)
    );
    assert!(stderr.contains("--wait-inactive"), "{}", show(&out));

    // With --wait-inactive, the reset goes ahead once the consumer leaves.
    let waiting = {
        let (group, repo, keyring) = (group.clone(), repo.clone(), keyring.clone());
        tokio::task::spawn_blocking(move || {
            kafka_offsets(
                "latest",
                &group,
                &repo,
                &kafka_bootstrap(),
                &["--wait-inactive", "60s", "--json"],
                &keyring,
            )
        })
    };
    drop(consumer);
    consumer_task.await.unwrap();
    let out = waiting.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(report["committed"].as_u64().unwrap() >= 1, "{report}");
    let after = committed_now(&topic, &group).await;
    assert!(
        after
            .iter()
            .all(|(k, v)| before.get(k).is_some_and(|b| v <= b)),
        "reset moved offsets forward: {before:?} → {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_counts_errors_and_stops_promptly_when_the_broker_is_down() {
    let (dir, capture) = start_capture("127.0.0.1:1", vec!["*".into()]).await;
    let m = capture.metrics.clone();
    wait_for("two failed cycles", Duration::from_secs(60), || {
        let m = m.clone();
        async move { m.kafka.capture_errors.get() >= 2 }
    })
    .await;
    assert_eq!(capture.metrics.kafka.cycles.get(), 0);
    let status = capture.metrics.status().kafka.expect("Kafka in /status");
    assert!(
        status.capture_errors >= 2 && status.last_cycle_seconds.is_none(),
        "{status:?}"
    );
    let text = mc_agent::metrics::encode(&capture.metrics.registry("rs0"));
    assert!(
        text.contains("mc_kafka_rpo_seconds{source=\"rs0\"} -1"),
        "{text}"
    );
    let t0 = Instant::now();
    capture.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        t0.elapsed()
    );
    let listed = std::fs::read_dir(dir.path().join("repo")).unwrap().count();
    assert!(listed >= 1);
}

/// Runs `mc-restore kafka-offsets --at AT --groups GROUP --repo REPO --source SOURCE
/// --bootstrap BOOTSTRAP` followed by `extra`.
fn kafka_offsets(
    at: &str,
    group: &str,
    repo: &str,
    bootstrap: &str,
    extra: &[&str],
    keyring: &std::path::Path,
) -> std::process::Output {
    let mut args = vec![
        "kafka-offsets",
        "--at",
        at,
        "--groups",
        group,
        "--repo",
        repo,
        "--source",
        SOURCE,
        "--bootstrap",
        bootstrap,
    ];
    args.extend_from_slice(extra);
    mc_restore(&args, keyring)
}

/// TLS and SASL settings reach librdkafka: an agent told to speak SCRAM over TLS to the test
/// broker (which speaks neither) counts failed Kafka cycles whose error names the settings, never
/// writes the password to its log, and captures MongoDB all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_sasl_settings_are_applied_and_a_mismatch_never_blocks_mongodb() {
    let (dir, _repo) = temp_repository().await;
    let secret = "hunter2-kafka-test-secret";
    let password = dir.path().join("kafka-password");
    std::fs::write(&password, secret).unwrap();
    let port = free_port();
    let extra = format!(
        concat!(
            "capture:\n  seal_interval: 300ms\nhttp:\n  listen: 127.0.0.1:{}\n",
            "kafka:\n  bootstrap_servers: [\"{}\"]\n  interval: 1s\n",
            "  security:\n    protocol: sasl_ssl\n",
            "    sasl:\n      mechanism: SCRAM-SHA-512\n      username: mc-test\n",
            "      password: {{ file: {} }}\n"
        ),
        port,
        kafka_bootstrap(),
        password.display()
    );
    let policy = write_test_policy(dir.path(), "kafka-tls", "ktls", "MC_SOURCE_URI", &extra);
    let log = dir.path().join("agent.log");
    let mut agent = std::process::Command::new(workspace_bin("mc-agent"))
        .args(["run", "--policy"])
        .arg(&policy)
        .env("MC_SOURCE_URI", mongodb_uri())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mc-agent");
    let started = Instant::now();
    let status = loop {
        let status: serde_json::Value = http_get(port, "/status")
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or_default();
        let capture = &status["capture"];
        if capture["capturing"] == true
            && capture["newest_durable_ts"].is_string()
            && capture["kafka"]["capture_errors"].as_u64() >= Some(1)
        {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) || agent.try_wait().unwrap().is_some() {
            let _ = agent.kill();
            panic!(
                "no failed Kafka cycle beside a capturing agent within 90 s; status {status}\nlog:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["capture"]["kafka"]["cycles"], 0, "{status}");
    mc_tests::bench::signal(agent.id(), "TERM").unwrap();
    let exit = agent.wait().unwrap();
    assert!(exit.success(), "agent exits 0 on SIGTERM: {exit:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("Kafka offset capture failed")
            && logged.contains("security: sasl_ssl, SCRAM-SHA-512 as mc-test"),
        "{logged}"
    );
    assert!(
        !logged.contains(secret),
        "the password is in the log:\n{logged}"
    );
}

/// `mc-restore` with `args` and `envs`, nothing else from the harness (no keyring variable, so
/// `--policy` runs do not conflict with it).
fn mc_restore_with(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(workspace_bin("mc-restore"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("MC_REPO")
        .env_remove("MC_KEYRING_FILE")
        .output()
        .expect("mc-restore runs")
}

/// TLS and SASL from `mc-restore`'s flags (no policy needed): SCRAM over TLS against the test
/// broker (which speaks neither) fails with exit 1 naming the settings, never showing the
/// password; the flags override the policy's `kafka.security` (a policy asking for SASL, the
/// flags for plaintext: the plaintext broker answers); bad combinations and a missing password
/// variable are refused before anything is contacted, naming the flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_flags_are_applied_checked_and_override_the_policy() {
    let topic = unique_name("ks-topic");
    let group = unique_name("ks-group");
    create_topic(&topic).await;
    let (stop_producer, rx) = watch::channel(false);
    let producer = spawn_producer(topic.clone(), rx);
    let (dir, capture) = start_capture(&kafka_bootstrap(), vec!["ks-group-*".into()]).await;
    let (consumer, consumer_task) =
        spawn_consumer(topic.clone(), group.clone(), unique_name("ks-client"));
    wait_for("the consumer to commit", Duration::from_secs(60), || {
        let (topic, group) = (topic.clone(), group.clone());
        async move { !committed_now(&topic, &group).await.is_empty() }
    })
    .await;
    drop(consumer);
    consumer_task.await.unwrap();
    capture.cycle_after(now_ms()).await;
    let _ = stop_producer.send(true);
    producer.await.unwrap();
    capture.stop().await;
    let (repo, keyring) = repo_args(dir.path());
    let keyring = keyring.display().to_string();
    let secret = "hunter2-dr-kafka-secret";
    let pw_var = "MC_TEST_DR_KAFKA_PASSWORD";
    let bootstrap = kafka_bootstrap();
    let base = [
        "kafka-offsets",
        "--at",
        "latest",
        "--groups",
        group.as_str(),
        "--repo",
        repo.as_str(),
        "--keyring",
        keyring.as_str(),
        "--source",
        SOURCE,
        "--bootstrap",
        bootstrap.as_str(),
        "--timeout",
        "3s",
        "--dry-run",
    ];
    let sasl_ssl = [
        "--kafka-security-protocol",
        "sasl_ssl",
        "--kafka-sasl-mechanism",
        "scram-sha-512",
        "--kafka-sasl-username",
        "dr-user",
        "--kafka-sasl-password-env",
        pw_var,
    ];

    // SCRAM over TLS to a plaintext broker: a clear failure naming the settings.
    let out = mc_restore_with(&[&base[..], &sasl_ssl[..]].concat(), &[(pw_var, secret)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let said = show(&out);
    assert!(
        said.contains("security: sasl_ssl, SCRAM-SHA-512 as dr-user"),
        "{said}"
    );
    assert!(!said.contains(secret), "the password is shown:\n{said}");

    // The password variable unset: refused before connecting, naming the flag and variable.
    let out = mc_restore_with(&[&base[..], &sasl_ssl[..]].concat(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "--kafka-sasl-password-env {pw_var}: the environment variable is not set"
        )),
        "{}",
        show(&out)
    );

    // Bad combinations, named by flag.
    for (flags, expected) in [
        (
            &["--kafka-sasl-mechanism", "plain"][..],
            "--kafka-sasl-mechanism given without --kafka-sasl-username",
        ),
        (
            &["--kafka-security-protocol", "sasl_plaintext"][..],
            "--kafka-security-protocol sasl_plaintext needs SASL credentials",
        ),
        (
            &[
                "--kafka-security-protocol",
                "plaintext",
                "--kafka-ca-file",
                "/etc/hosts",
            ][..],
            "--kafka-ca-file given but --kafka-security-protocol plaintext does not use TLS",
        ),
    ] {
        let out = mc_restore_with(&[&base[..], flags].concat(), &[]);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{flags:?}: {}",
            show(&out)
        );
    }
    // The password itself is no flag.
    let out = mc_restore_with(
        &[&base[..], &["--kafka-sasl-password", secret]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(!show(&out).contains(secret), "{}", show(&out));

    // The policy asks for SCRAM over TLS; the flags' plaintext wins, and the broker answers.
    let password = dir.path().join("kafka-password");
    std::fs::write(&password, secret).unwrap();
    let extra = format!(
        "kafka:\n  bootstrap_servers: [\"{bootstrap}\"]\n  security:\n    protocol: sasl_ssl\n    sasl:\n      mechanism: SCRAM-SHA-512\n      username: mc-test\n      password: {{ file: {} }}\n",
        password.display()
    );
    let policy = write_test_policy(dir.path(), "kafka-flags", SOURCE, "MC_SOURCE_URI", &extra);
    let policy = policy.display().to_string();
    let with_policy = [
        "kafka-offsets",
        "--at",
        "latest",
        "--groups",
        group.as_str(),
        "--policy",
        policy.as_str(),
        "--timeout",
        "3s",
        "--dry-run",
    ];
    let uri = mongodb_uri();
    let env = [("MC_SOURCE_URI", uri.as_str())];
    let out = mc_restore_with(&with_policy, &env);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the policy's SASL is used: {}",
        show(&out)
    );
    assert!(
        show(&out).contains("security: sasl_ssl, SCRAM-SHA-512 as mc-test"),
        "{}",
        show(&out)
    );
    let out = mc_restore_with(
        &[
            &with_policy[..],
            &["--kafka-security-protocol", "plaintext"],
        ]
        .concat(),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dry run: nothing committed"),
        "{}",
        show(&out)
    );

    // `mc-restore --at … --kafka-groups` takes the same flags, checked the same way.
    let out = mc_restore_with(
        &[
            "--at",
            "latest",
            "--dry-run",
            "--repo",
            &repo,
            "--keyring",
            &keyring,
            "--source",
            SOURCE,
            "--kafka-groups",
            &group,
            "--kafka-bootstrap",
            &bootstrap,
            "--kafka-sasl-username",
            "dr-user",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--kafka-sasl-username given without --kafka-sasl-mechanism"),
        "{}",
        show(&out)
    );
}
