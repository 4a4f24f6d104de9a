//! `casetrail bench check-report`: the peak memory and time of `check-report` on published tables of growing size,
//! streamed (the command as it is) against the whole table held in memory (the server's path for a request body,
//! and the command's before issue 25), in the same run, alternating. Each run is a child process, its peak resident
//! set read from the kernel (`wait4`).

use crate::bench::median;
use crate::cmd::Result;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// A published table of about `bytes`: levels of 200 agency lines, each line adding up, its online rate printed
/// half up over new dossiers (one in a thousand a slip), a total line at the end.
fn table(path: &Path, bytes: u64) -> Result<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "Loại dòng,Đơn vị,(3),(4),(5),(6),(7),(8),(9),(10),(11),(12),(13),Tỷ lệ trực tuyến (%)"
    )?;
    let (mut written, mut rows) = (0u64, 0u64);
    let mut total = [0i64; 11];
    let line = |kind: &str, name: &str, c: &[i64; 11], slip: bool| {
        let new = c[1] + c[2];
        let rate = if new == 0 {
            String::new()
        } else {
            let hundredths = (c[1] * 10_000 * 2 + new) / (2 * new) + i64::from(slip);
            format!("\"{}.{:02}\"", hundredths / 100, hundredths % 100)
        };
        let counts: Vec<String> = c.iter().map(i64::to_string).collect();
        format!("{kind},{name},{},{rate}\n", counts.join(","))
    };
    while written < bytes {
        let mut level = [0i64; 11];
        let mut agencies = Vec::new();
        for _ in 0..200 {
            let (online, direct, carried) = (
                rng.gen_range(0..400),
                rng.gen_range(0..2_000),
                rng.gen_range(0..300),
            );
            let all = online + direct + carried;
            let resolved = rng.gen_range(0..=all);
            let early = rng.gen_range(0..=resolved);
            let on_time = rng.gen_range(0..=resolved - early);
            let in_progress = all - resolved;
            let in_time = rng.gen_range(0..=in_progress);
            let c = [
                all,
                online,
                direct,
                carried,
                resolved,
                early,
                on_time,
                resolved - early - on_time,
                in_progress,
                in_time,
                in_progress - in_time,
            ];
            for (l, n) in level.iter_mut().zip(c) {
                *l += n;
            }
            rows += 1;
            let name = format!("UBND xã Thạch {rows}");
            agencies.push(line("agency", &name, &c, rows % 1000 == 0));
        }
        for (t, n) in total.iter_mut().zip(level) {
            *t += n;
        }
        let head = line("level", "Cấp xã", &level, false);
        written += head.len() as u64;
        out.write_all(head.as_bytes())?;
        for a in agencies {
            written += a.len() as u64;
            out.write_all(a.as_bytes())?;
        }
        rows += 1;
    }
    out.write_all(line("total", "Tổng cộng", &total, false).as_bytes())?;
    out.flush()?;
    Ok(rows + 1)
}

/// One child run: (peak resident set in MiB, seconds).
fn measured(args: &[&str]) -> Result<(f64, f64)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let child = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel; the pid is our own child, reaped here once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()).into());
    }
    // Exit 3 is a table that does not hold (the slips written in): the check ran.
    let code = libc::WEXITSTATUS(status);
    if !libc::WIFEXITED(status) || !(code == 0 || code == 3) {
        return Err(format!("{args:?} ended with status {status}").into());
    }
    Ok((usage.ru_maxrss as f64 / 1024.0, seconds))
}

/// The whole table in memory, then the whole answer as one string: what `check-report` did before it streamed,
/// and what `POST /v1/indicators/check` still does with a body it holds (under its body limit).
pub fn in_memory(file: &Path, json: bool) -> Result<ExitCode> {
    use projections::indicators::check::{written, Format};
    let bytes = std::fs::read(file)?;
    let profiles = app::indicators::profiles(None)?;
    let report = app::check::check_alone(&profiles, &bytes, &app::check::CheckQuestion::default())?;
    let format = if json { Format::Json } else { Format::Text };
    std::io::stdout().write_all(written(&report, format).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(dir: &Path, sizes: &[u64], runs: usize) -> Result<ExitCode> {
    let dir = tempfile::tempdir_in(dir)?;
    println!("| table | rows | way | peak RSS (MiB) | × table size | time (s) |");
    println!("|---:|---:|---|---:|---:|---:|");
    for &mb in sizes {
        let file = dir.path().join(format!("table-{mb}.csv"));
        let rows = table(&file, mb << 20)?;
        let size = std::fs::metadata(&file)?.len() as f64 / f64::from(1 << 20);
        let path = file
            .to_str()
            .ok_or("the bench directory's path is not UTF-8")?;
        let ways: [(&str, Vec<&str>); 4] = [
            ("streamed, text", vec!["check-report", path]),
            (
                "streamed, json",
                vec!["check-report", path, "--format", "json"],
            ),
            ("in memory, text", vec!["bench", "check-in-memory", path]),
            (
                "in memory, json",
                vec!["bench", "check-in-memory", path, "--json"],
            ),
        ];
        let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); ways.len()];
        for round in 0..runs.max(1) {
            // Alternating, and in the other order every other round, so that neither way always runs warm.
            let mut order: Vec<usize> = (0..ways.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let (rss, seconds) = measured(&ways[i].1)?;
                figures[i].0.push(rss);
                figures[i].1.push(seconds);
            }
        }
        for ((what, _), (rss, seconds)) in ways.iter().zip(figures) {
            let rss = median(rss);
            println!(
                "| {size:.1} MiB | {rows} | {what} | {rss:.1} | {:.2} | {:.2} |",
                rss / size,
                median(seconds)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    /// The benchmark's table is one a province could print: every line adds up, each level and the total sum
    /// their lines, and only the planted slips (one in a thousand agency lines) are named.
    #[test]
    fn the_benchmark_table_adds_up_but_for_its_planted_slips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.csv");
        let rows = super::table(&file, 300_000).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        let profiles = app::indicators::profiles(None).unwrap();
        let report =
            app::check::check_alone(&profiles, &bytes, &app::check::CheckQuestion::default())
                .unwrap();
        assert_eq!(report.rows.len() as u64, rows);
        assert_eq!(report.summary.sums_failed, 0, "{:?}", report.summary);
        let agencies = report
            .rows
            .iter()
            .filter(|r| r.name.starts_with("UBND"))
            .count();
        assert!(agencies > 3000, "{agencies}");
        let planted = report
            .rows
            .iter()
            .filter(|r| r.name.starts_with("UBND"))
            .filter(|r| {
                let n: u64 = r.name.rsplit(' ').next().unwrap().parse().unwrap();
                n % 1000 == 0 && r.rates.values().next().is_some()
            })
            .count();
        assert_eq!(report.summary.slips, planted);
        let subtotals = report
            .rows
            .iter()
            .flat_map(|r| &r.sums)
            .filter(|s| s.rule.starts_with("subtotal") || s.rule.starts_with("total"))
            .count();
        assert!(subtotals > 11 * 10, "{subtotals}");
    }
}
