//! The reset plan as a table for people ([`format_table`]).

use super::KafkaResetPlan;

/// The plan as a table: group, topic, partition, current committed, target, delta.
pub fn format_table(plan: &KafkaResetPlan) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "GROUP".into(),
        "TOPIC".into(),
        "PARTITION".into(),
        "CURRENT".into(),
        "TARGET".into(),
        "DELTA".into(),
    ]];
    for g in &plan.groups {
        for p in &g.partitions {
            rows.push([
                g.group.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                p.current.map_or("-".into(), |c| c.to_string()),
                format!("{}{}", p.target, if p.clamped.is_some() { "*" } else { "" }),
                p.delta.map_or("-".into(), |d| format!("{d:+}")),
            ]);
        }
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i >= 2 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
