//! `mc-restore verify`: read every object of the repository (or of one source), compare it with
//! the catalog's checksum and open every frame; list each failure with its reason.

use mc_core::catalog::{verify, Verdict};
use mc_core::cli::RepoOpts;

/// Runs verification; returns the process exit code (0 all good, 3 damage found).
pub async fn run(repo: &RepoOpts, source: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let repository = repo.open(false).await?;
    let report = verify(&repository, source).await?;
    let failures: Vec<_> = report.failures().collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let total_bytes: u64 = report.objects.iter().map(|o| o.size).sum();
        println!(
            "checked {} objects ({} bytes) in {}",
            report.objects.len(),
            total_bytes,
            repository.store().describe()
        );
        for f in &failures {
            println!(
                "FAILED {}: {} — {}",
                f.key,
                verdict_word(&f.verdict),
                f.detail.as_deref().unwrap_or("")
            );
        }
        if failures.is_empty() {
            println!("all objects intact");
        } else {
            println!("{} object(s) failed verification", failures.len());
        }
    }
    Ok(if failures.is_empty() {
        0
    } else {
        super::EXIT_VERIFY_FAILED
    })
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Missing => "missing",
        Verdict::ChecksumMismatch => "checksum mismatch",
        Verdict::WrongKey => "wrong key",
        Verdict::Tampered => "tampered",
        Verdict::Truncated => "truncated",
        Verdict::Renamed => "renamed or swapped",
        Verdict::Corrupt => "corrupt",
        Verdict::Io => "storage error",
    }
}
