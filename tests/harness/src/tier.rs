//! The `run` and `list` subcommands: check the inputs, build the initramfs images, run the
//! cases, print and save the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::case::{self, Case};
use crate::cli::{ListArgs, RunArgs};
use crate::error::{HarnessError, Result};
use crate::initramfs::{self, Busybox, HostPayload};
use crate::inputs::{self, load_input};
use crate::interrupt;
use crate::qemu::{self, QemuConfig};
use crate::report::{self, CaseResult, Outcome};
use crate::runner::{self, RunSettings};

/// Memory of the test host in MiB.
const HOST_MEM_MIB: u32 = 1024;
/// Exit status when a case failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when the tier could not run.
pub const EXIT_NOT_RUN: u8 = 3;
/// Exit status after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// `list`: one line per case (name, timeout, description).
pub fn list(args: &ListArgs) -> Result<ExitCode> {
    let cases = case::select(case::discover(&args.cases_dir)?, &args.filters);
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &cases {
        println!(
            "{:width$}  {:>4}s  {}",
            c.name,
            c.timeout.as_secs(),
            c.description
        );
    }
    println!("{} case(s) in {}", cases.len(), args.cases_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `run`: runs the selected cases and prints the report; the last stdout line is the tier line.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let cases = case::select(case::discover(&args.cases_dir)?, &args.filters);
    if cases.is_empty() {
        return Err(HarnessError::NoCaseSelected {
            dir: args.cases_dir.clone(),
            filter: args.filters.join(" | "),
        });
    }
    let report_dir = std::path::absolute(&args.report_dir)
        .map_err(|e| HarnessError::file("resolve", &args.report_dir, e))?;
    let settings = match prepare(args, &report_dir) {
        Ok(settings) => settings,
        Err(e) => return Ok(not_run(&cases, &report_dir, &e.to_string())),
    };
    interrupt::install();
    eprintln!(
        "harness: {} case(s), {} job(s), {} with tsc_early_khz={}, reports in {}",
        cases.len(),
        settings.jobs,
        settings.qemu.qemu.display(),
        settings.qemu.tsc_khz,
        report_dir.display()
    );
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let results = runner::run_cases(&cases, &settings, |r| {
        eprintln!("harness: {}", report::result_line(r, width));
    });

    let no_kvm = results
        .iter()
        .find_map(|r| r.timeline.no_kvm().map(str::to_owned));
    let mut text = String::new();
    if let Some(reason) = &no_kvm {
        text.push_str(&banner(&format!("the test host has no /dev/kvm: {reason}")));
    }
    text.push_str(&report::render(&results));
    let summary = write_summary(&report_dir, &settings, &results, &text);
    print_report(&text, summary.as_deref());

    let any = |f: fn(&Outcome) -> bool| results.iter().any(|r| f(&r.outcome));
    Ok(ExitCode::from(if interrupt::requested() {
        EXIT_INTERRUPTED
    } else if no_kvm.is_some() {
        EXIT_NOT_RUN
    } else if any(|o| matches!(o, Outcome::Fail(_))) {
        EXIT_FAILED
    } else if any(|o| matches!(o, Outcome::Skip(_))) {
        EXIT_NOT_RUN
    } else {
        0
    }))
}

/// Prints the report with the summary path before the tier line, which stays last.
fn print_report(text: &str, summary: Option<&Path>) {
    let (body, tier) = text.rsplit_once('\n').unwrap_or(("", text));
    println!("{body}");
    if let Some(path) = summary {
        println!("summary: {}", path.display());
    }
    println!("{tier}");
}

/// A loud block explaining why the tier did not run.
fn banner(reason: &str) -> String {
    let rule = "=".repeat(78);
    format!("{rule}\nHARNESS TIER NOT RUN: {reason}\n{rule}\n")
}

/// Reports every case as skipped because the tier cannot run.
fn not_run(cases: &[Case], report_dir: &Path, reason: &str) -> ExitCode {
    let results: Vec<CaseResult> = cases
        .iter()
        .map(|c| CaseResult::skipped(&c.name, "tier not run"))
        .collect();
    let text = format!("{}{}", banner(reason), report::render(&results));
    let summary = std::fs::create_dir_all(report_dir).ok().and_then(|()| {
        let path = report_dir.join("summary.txt");
        std::fs::write(&path, format!("{text}\n"))
            .ok()
            .map(|()| path)
    });
    print_report(&text, summary.as_deref());
    ExitCode::from(EXIT_NOT_RUN)
}

/// Checks every input and builds both initramfs images under `<report>/_build/`.
fn prepare(args: &RunArgs, report_dir: &Path) -> Result<RunSettings> {
    let qemu = inputs::find_program(&args.qemu).ok_or_else(|| HarnessError::MissingProgram {
        program: args.qemu.display().to_string(),
        hint: "install Debian's qemu-system-x86 (scripts/test-harness.sh does)",
    })?;
    const KERNEL_HINT: &str =
        "build it with scripts/build-kernel.sh (its last stdout line is the directory)";
    let host_kernel = load_input(
        "host kernel",
        &args.host_kernel,
        KERNEL_HINT,
        inputs::vmlinux_problem,
    )?;
    drop(host_kernel);
    let guest_kernel = load_input(
        "guest kernel",
        &args.guest_kernel,
        KERNEL_HINT,
        inputs::vmlinux_problem,
    )?;
    let guest_bzimage = load_input(
        "guest bzImage",
        &args.guest_bzimage,
        KERNEL_HINT,
        inputs::bzimage_problem,
    )?;
    let shim = load_input(
        "shim",
        &args.shim,
        "build it with `cargo build --release --target x86_64-unknown-linux-musl -p boxlite-shim`",
        inputs::static_elf_problem,
    )?;
    let busybox_bin = load_input(
        "busybox",
        &args.busybox,
        "install Debian's busybox-static",
        inputs::static_elf_problem,
    )?;
    let tsc_khz = match args.tsc_khz {
        Some(khz) => khz,
        None => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
                .map_err(|e| HarnessError::TscUnknown(format!("cannot read /proc/cpuinfo: {e}")))?;
            qemu::tsc_khz_from_cpuinfo(&cpuinfo).ok_or_else(|| {
                HarnessError::TscUnknown("no `cpu MHz` line in /proc/cpuinfo".into())
            })?
        }
    };

    let build_dir = report_dir.join("_build");
    std::fs::create_dir_all(&build_dir)
        .map_err(|e| HarnessError::file("create directory", &build_dir, e))?;
    let busybox = Busybox::load(&args.busybox, busybox_bin);
    let guest_initrd = initramfs::guest_initramfs(&busybox)?;
    let guest_path = build_dir.join("guest-initrd.cpio");
    std::fs::write(&guest_path, &guest_initrd)
        .map_err(|e| HarnessError::file("write", &guest_path, e))?;
    let host_initrd = build_dir.join("host-initrd.cpio");
    initramfs::write_host_initramfs(
        &host_initrd,
        &busybox,
        &HostPayload {
            shim: &shim,
            guest_kernel: &guest_kernel,
            guest_bzimage: &guest_bzimage,
            guest_initrd: &guest_initrd,
        },
    )?;
    Ok(RunSettings {
        qemu: QemuConfig {
            qemu,
            kernel: args.host_kernel.clone(),
            initrd: host_initrd,
            tsc_khz,
            mem_mib: HOST_MEM_MIB,
            assets_dir: args.assets_dir.clone(),
        },
        report_dir: report_dir.to_owned(),
        jobs: args.jobs,
    })
}

/// Writes `<report>/summary.txt`: settings, the report, and every case's event timeline.
fn write_summary(
    report_dir: &Path,
    settings: &RunSettings,
    results: &[CaseResult],
    text: &str,
) -> Option<PathBuf> {
    let mut s = String::new();
    let q = &settings.qemu;
    let _ = writeln!(s, "qemu: {}", q.qemu.display());
    let _ = writeln!(s, "host kernel: {}", q.kernel.display());
    let _ = writeln!(s, "host initramfs: {}", q.initrd.display());
    let _ = writeln!(s, "tsc_early_khz: {}  jobs: {}\n", q.tsc_khz, settings.jobs);
    let _ = writeln!(s, "{text}\n");
    let _ = writeln!(s, "timelines (ms since QEMU spawn):");
    s.push_str(&report::render_timelines(results));
    let path = report_dir.join("summary.txt");
    match std::fs::write(&path, s) {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("harness: cannot write {}: {e}", path.display());
            None
        }
    }
}

/// `guest-initrd`: writes the guest initramfs the cases boot, for running the shim by hand.
pub fn write_guest_initrd(args: &crate::cli::GuestInitrdArgs) -> Result<ExitCode> {
    let busybox_bin = load_input(
        "busybox",
        &args.busybox,
        "install Debian's busybox-static",
        inputs::static_elf_problem,
    )?;
    let initrd = initramfs::guest_initramfs(&Busybox::load(&args.busybox, busybox_bin))?;
    std::fs::write(&args.out, initrd).map_err(|e| HarnessError::file("write", &args.out, e))?;
    Ok(ExitCode::SUCCESS)
}
