//! The drill report: one stable JSON schema (`docs/drills.md`), rendered also as Markdown and as a
//! self-contained HTML page a person reads in 30 seconds (verdict first, an inline-SVG phase
//! timeline, RTO/RPO against targets, verification, volumes, the command to reproduce).

use serde::{Deserialize, Serialize};

/// Version of the JSON schema below; bumped on any incompatible change.
pub const REPORT_SCHEMA: u32 = 1;

/// The verdict of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Restored, verified, within the RTO and the RPO.
    Pass,
    /// The restored data differs from the source (or from what the snapshot recorded).
    VerificationFailed,
    /// Restored and verified, but slower than the RTO or further behind than the RPO.
    TargetMissed,
    /// Restored within the targets and nothing found wrong, but some namespaces could not be
    /// verified (the reasons name them): not a full pass.
    NotFullyVerified,
    /// The drill could not complete (the error says why).
    Error,
}

impl Verdict {
    /// The process exit code of `mc-restore drill` for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Error => 1,
            Verdict::VerificationFailed => 3,
            Verdict::TargetMissed => 4,
            Verdict::NotFullyVerified => 5,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::VerificationFailed => "FAIL: verification",
            Verdict::TargetMissed => "FAIL: target missed",
            Verdict::NotFullyVerified => "NOT A FULL PASS: not everything could be verified",
            Verdict::Error => "FAIL: error",
        }
    }
}

/// One timed phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub name: String,
    /// Seconds from the drill's start to the phase's start.
    pub start_seconds: f64,
    pub seconds: f64,
}

/// How one namespace was verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceCheck {
    pub ns: String,
    /// `source-at-T` (compared with the live source read at T), `snapshot-record` (counts and
    /// index definitions the snapshot recorded), or `none`.
    pub method: String,
    /// `match`, `mismatch` or `not_verifiable`.
    pub status: String,
    pub details: Vec<String>,
}

/// A drill's full record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub schema: u32,
    pub id: String,
    /// The protected system's name and source id.
    pub system: String,
    pub source: String,
    pub verdict: Verdict,
    /// Why the verdict is not `pass`, one line each.
    pub reasons: Vec<String>,
    /// RFC 3339.
    pub started: String,
    pub finished: String,
    /// The restore point asked for and the exact oplog timestamp restored to.
    pub point: String,
    pub restored_to: Option<String>,
    pub snapshot: Option<String>,
    /// Scratch target, password redacted.
    pub scratch: String,
    pub phases: Vec<PhaseTiming>,
    pub rto: Objective,
    pub rpo: Objective,
    /// What was restored.
    pub volumes: Volumes,
    pub verification: Vec<NamespaceCheck>,
    /// The command that reproduces this drill.
    pub command: String,
    /// Where the report was stored in the repository.
    pub repository_key: Option<String>,
    /// The Kafka reset a real restore would make (planned, not applied): groups, partitions,
    /// the offsets segment read, warnings. Absent without Kafka in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<serde_json::Value>,
    /// Users and roles restored onto the scratch target (`users`, `roles`: `db.name`), and those
    /// the scratch already had and kept (`kept_existing_users`, `kept_existing_roles`). Absent
    /// unless the drill restores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_and_roles: Option<serde_json::Value>,
}

/// A measured value against its target, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Objective {
    pub target_seconds: f64,
    pub measured_seconds: Option<f64>,
    /// For the RTO: the measured duration scaled to the full size of the newest snapshot and the
    /// oplog a restore would replay (from this drill's throughput).
    pub projected_seconds: Option<f64>,
    pub met: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Volumes {
    pub collections: u64,
    pub documents: u64,
    pub document_bytes: u64,
    pub oplog_entries_replayed: u64,
    pub fetched_bytes: u64,
    /// Full size of the newest snapshot of the source (all namespaces), for the projection.
    pub full_snapshot_bytes: u64,
}

impl DrillReport {
    /// One sentence on the users and roles restored, if the drill restored them.
    fn users_line(&self) -> Option<String> {
        let u = self.users_and_roles.as_ref()?;
        let n = |k: &str| u[k].as_array().map_or(0, Vec::len);
        Some(format!(
            "Users and roles: {} users and {} roles restored as at the point; kept as the scratch target had them: users {}, roles {}.",
            n("users"),
            n("roles"),
            n("kept_existing_users"),
            n("kept_existing_roles")
        ))
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "# Recovery drill {}: {}\n\n{} · source `{}` · {} → {}\n\n",
            self.id,
            self.verdict.word(),
            self.system,
            self.source,
            self.started,
            self.finished
        );
        for r in &self.reasons {
            md += &format!("- {r}\n");
        }
        md += &format!(
            "\n| objective | target | measured | projected (full size) | met |\n|---|---|---|---|---|\n| RTO | {} | {} | {} | {} |\n| RPO | {} | {} | | {} |\n",
            secs(Some(self.rto.target_seconds)),
            secs(self.rto.measured_seconds),
            secs(self.rto.projected_seconds),
            yes(self.rto.met),
            secs(Some(self.rpo.target_seconds)),
            secs(self.rpo.measured_seconds),
            yes(self.rpo.met)
        );
        md += &format!(
            "\nRestore point `{}` (restored to `{}`), snapshot `{}`, into `{}`.\n\n## Phases\n\n| phase | start (s) | duration (s) |\n|---|---|---|\n",
            self.point,
            self.restored_to.as_deref().unwrap_or("-"),
            self.snapshot.as_deref().unwrap_or("-"),
            self.scratch
        );
        for p in &self.phases {
            md += &format!(
                "| {} | {:.2} | {:.2} |\n",
                p.name, p.start_seconds, p.seconds
            );
        }
        let v = &self.volumes;
        md += &format!(
            "\n## Volumes\n\n{} collections, {} documents ({} bytes of BSON), {} oplog entries replayed, {} bytes fetched; newest full snapshot {} bytes.{}\n\n## Verification\n\n| namespace | method | status | details |\n|---|---|---|---|\n",
            v.collections, v.documents, v.document_bytes, v.oplog_entries_replayed, v.fetched_bytes, v.full_snapshot_bytes,
            self.users_line().map(|l| format!(" {l}")).unwrap_or_default()
        );
        for c in &self.verification {
            md += &format!(
                "| {} | {} | {} | {} |\n",
                c.ns,
                c.method,
                c.status,
                c.details.join("; ")
            );
        }
        md += &format!("\n## Reproduce\n\n```sh\n{}\n```\n", self.command);
        md
    }

    /// The report as one HTML page with no external resources.
    pub fn to_html(&self) -> String {
        let color = if self.verdict == Verdict::Pass {
            "#1a7f37"
        } else {
            "#cf222e"
        };
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>Drill {id}: {word}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#1f2328}}\
.verdict{{background:{color};color:#fff;padding:1em 1.5em;border-radius:8px;font-size:1.6em}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d7de;padding:4px 10px;text-align:left}}\
.ok{{color:#1a7f37;font-weight:bold}}.bad{{color:#cf222e;font-weight:bold}}code,pre{{background:#f6f8fa;padding:2px 4px}}pre{{white-space:pre-wrap;word-break:break-all}}</style></head><body>\n\
<div class=\"verdict\" id=\"verdict\">{word}</div>\n<p>{system} · source <code>{source}</code> · drill <code>{id}</code> · {started} → {finished}</p>\n",
            id = esc(&self.id),
            word = esc(self.verdict.word()),
            system = esc(&self.system),
            source = esc(&self.source),
            started = esc(&self.started),
            finished = esc(&self.finished),
        );
        if !self.reasons.is_empty() {
            html += "<ul>";
            for r in &self.reasons {
                html += &format!("<li>{}</li>", esc(r));
            }
            html += "</ul>\n";
        }
        let cls = |ok: bool| if ok { "ok" } else { "bad" };
        html += &format!(
            "<h2>Objectives</h2><table><tr><th>objective</th><th>target</th><th>measured</th><th>projected (full size)</th><th>met</th></tr>\
<tr><td>RTO</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>\
<tr><td>RPO</td><td>{}</td><td>{}</td><td></td><td class=\"{}\">{}</td></tr></table>\n",
            secs(Some(self.rto.target_seconds)),
            secs(self.rto.measured_seconds),
            secs(self.rto.projected_seconds),
            cls(self.rto.met),
            yes(self.rto.met),
            secs(Some(self.rpo.target_seconds)),
            secs(self.rpo.measured_seconds),
            cls(self.rpo.met),
            yes(self.rpo.met),
        );
        html += &format!("<h2>Phases</h2>\n{}\n", self.timeline_svg());
        html += &format!(
            "<p>Restore point <code>{}</code>, restored to <code>{}</code>, snapshot <code>{}</code>, into <code>{}</code>.</p>\n",
            esc(&self.point),
            esc(self.restored_to.as_deref().unwrap_or("-")),
            esc(self.snapshot.as_deref().unwrap_or("-")),
            esc(&self.scratch)
        );
        let v = &self.volumes;
        html += &format!(
            "<h2>Volumes</h2><p>{} collections, {} documents ({} bytes of BSON), {} oplog entries replayed, {} bytes fetched; newest full snapshot {} bytes.{}</p>\n",
            v.collections, v.documents, v.document_bytes, v.oplog_entries_replayed, v.fetched_bytes, v.full_snapshot_bytes,
            self.users_line().map(|l| format!(" {}", esc(&l))).unwrap_or_default()
        );
        html += "<h2>Verification</h2><table><tr><th>namespace</th><th>method</th><th>status</th><th>details</th></tr>";
        for c in &self.verification {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                esc(&c.ns),
                esc(&c.method),
                cls(c.status != "mismatch"),
                esc(&c.status),
                esc(&c.details.join("; "))
            );
        }
        html += "</table>\n";
        html += &format!(
            "<h2>Reproduce</h2><pre>{}</pre>\n</body></html>\n",
            esc(&self.command)
        );
        html
    }

    /// A horizontal bar per phase on a common time axis.
    fn timeline_svg(&self) -> String {
        let total = self
            .phases
            .iter()
            .map(|p| p.start_seconds + p.seconds)
            .fold(0.0_f64, f64::max)
            .max(0.001);
        let (width, left, row) = (900.0, 110.0, 26.0);
        let scale = (width - left - 60.0) / total;
        let height = row * self.phases.len() as f64 + 30.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"phase timeline\">"
        );
        for (i, p) in self.phases.iter().enumerate() {
            let y = i as f64 * row + 4.0;
            let x = left + p.start_seconds * scale;
            let w = (p.seconds * scale).max(1.0);
            svg += &format!(
                "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{name}</text><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"#0969da\"/><text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{s:.2} s</text>",
                ty = y + 14.0,
                name = esc(&p.name),
                tx = x + w + 4.0,
                s = p.seconds
            );
        }
        svg += &format!(
            "<text x=\"{left}\" y=\"{}\" font-size=\"12\">0 s</text><text x=\"{}\" y=\"{}\" font-size=\"12\">{total:.1} s</text></svg>",
            height - 6.0,
            width - 60.0,
            height - 6.0
        );
        svg
    }
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(s) if s >= 3600.0 => format!("{:.2} h", s / 3600.0),
        Some(s) if s >= 120.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{s:.1} s"),
        None => "-".into(),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
