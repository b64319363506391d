//! Runs wrk pinned to the client core and parses its `--latency` report.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// How wrk is run: the same for every target.
#[derive(Debug, Clone)]
pub struct WrkConfig {
    /// CPU the load generator is pinned to.
    pub cpu: u32,
    /// wrk threads (`-t`).
    pub threads: u32,
    /// Open connections (`-c`).
    pub connections: u32,
}

impl WrkConfig {
    /// The command line for one run, without the URL.
    pub fn command(&self, duration_secs: u64, script: Option<&Path>) -> Vec<String> {
        let mut cmd = vec![
            "taskset".to_owned(),
            "-c".to_owned(),
            self.cpu.to_string(),
            "wrk".to_owned(),
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{duration_secs}s"),
            "--latency".to_owned(),
        ];
        if let Some(script) = script {
            cmd.push("-s".to_owned());
            cmd.push(script.display().to_string());
        }
        cmd
    }

    /// Runs wrk against `url` for `duration_secs` and parses its report.
    pub async fn run(
        &self,
        url: &str,
        duration_secs: u64,
        script: Option<&Path>,
    ) -> Result<WrkStats> {
        let mut cmd = self.command(duration_secs, script);
        cmd.push(url.to_owned());
        let (program, args) = cmd.split_first().context("empty wrk command")?;
        let out = tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running `{}`", cmd.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}{}",
                cmd.join(" "),
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse(&stdout).with_context(|| format!("parsing wrk output:\n{stdout}"))
    }
}

/// The numbers taken from one wrk run.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkStats {
    /// "Requests/sec:".
    pub requests_per_sec: f64,
    /// 50th percentile latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
    /// Total requests completed ("N requests in ...").
    pub requests: u64,
    /// "Non-2xx or 3xx responses:", 0 when absent.
    pub non_2xx: u64,
    /// The "Socket errors:" line, when wrk printed one.
    pub socket_errors: Option<String>,
}

/// Parses the output of `wrk --latency`.
pub fn parse(output: &str) -> Result<WrkStats> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = Some(
                rest.trim()
                    .parse::<f64>()
                    .with_context(|| format!("bad Requests/sec line: {line:?}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = Some(parse_duration_ms(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = Some(parse_duration_ms(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest
                .trim()
                .parse()
                .with_context(|| format!("bad Non-2xx line: {line:?}"))?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            socket_errors = Some(rest.trim().to_owned());
        } else if let Some((count, rest)) = line.split_once(" requests in ")
            && !rest.is_empty()
        {
            requests = count.trim().parse().ok();
        }
    }
    Ok(WrkStats {
        requests_per_sec: rps.context("no \"Requests/sec:\" line")?,
        p50_ms: p50.context("no 50% line (was --latency given?)")?,
        p99_ms: p99.context("no 99% line (was --latency given?)")?,
        requests: requests.unwrap_or(0),
        non_2xx,
        socket_errors,
    })
}

/// Converts a wrk duration such as `296.00us`, `1.02ms`, `2.00s` or `1.50m` to milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<f64> {
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        bail!("duration without unit: {s:?}");
    };
    let value: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad duration {s:?}"))?;
    Ok(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 3s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   321.29us  120.10us   5.00ms   89.12%
    Req/Sec    41.23k     1.20k   43.00k    70.00%
  Latency Distribution
     50%  296.00us
     75%  340.00us
     90%  410.00us
     99%    1.02ms
  123695 requests in 3.00s, 15.45MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  41231.67
Transfer/sec:      5.15MB
";

    #[test]
    fn parses_sample() -> Result<()> {
        let s = parse(SAMPLE)?;
        assert!((s.requests_per_sec - 41231.67).abs() < 1e-9);
        assert!((s.p50_ms - 0.296).abs() < 1e-9);
        assert!((s.p99_ms - 1.02).abs() < 1e-9);
        assert_eq!(s.requests, 123_695);
        assert_eq!(s.non_2xx, 5);
        assert_eq!(
            s.socket_errors.as_deref(),
            Some("connect 0, read 0, write 0, timeout 2")
        );
        Ok(())
    }

    #[test]
    fn units() -> Result<()> {
        assert!((parse_duration_ms("2.00s")? - 2000.0).abs() < 1e-9);
        assert!((parse_duration_ms("1.50m")? - 90_000.0).abs() < 1e-9);
        assert!((parse_duration_ms("12.5ms")? - 12.5).abs() < 1e-9);
        assert!(parse_duration_ms("12").is_err());
        Ok(())
    }

    #[test]
    fn missing_latency_is_an_error() {
        assert!(parse("Requests/sec: 10\n").is_err());
    }
}
