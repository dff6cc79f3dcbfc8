//! `boxlite`: run commands in boxes. A thin client of the lifecycle runtime; see `boxlite --help`.

mod args;
mod doctor;
mod exec;

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use boxlite_lifecycle::{
    Assets, BoxHandle, BoxOptions, BoxState, Disk, GuestSession, Root, Runtime, RuntimeOptions,
};
use clap::{CommandFactory, Parser};

use crate::args::{BoxArgs, Cli, Command, ExecArgs, RunArgs};

/// Status for failures of boxlite itself (a command's own status passes through unchanged).
const EXIT_BOXLITE_ERROR: u8 = 125;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(status) => ExitCode::from(u8::try_from(status.clamp(0, 255)).unwrap_or(u8::MAX)),
        Err(e) => {
            eprintln!("boxlite: {e:#}");
            ExitCode::from(EXIT_BOXLITE_ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::max_level()
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                eprintln!(
                    "boxlite: {}: {}",
                    r.level().as_str().to_lowercase(),
                    r.args()
                );
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    });
}

fn runtime(cli: &Cli) -> anyhow::Result<Runtime> {
    Ok(Runtime::open(RuntimeOptions {
        home: cli.home.clone(),
        assets: Assets {
            shim: cli.shim.clone(),
            kernel: cli.kernel.clone(),
            initrd: cli.initrd.clone(),
        },
        ..RuntimeOptions::default()
    })?)
}

fn box_options(args: &BoxArgs, detach: bool, auto_remove: bool) -> BoxOptions {
    BoxOptions {
        name: args.name.clone(),
        cpus: args.cpus,
        memory_mib: args.memory,
        root: args.root_disk.clone().map_or(Root::Default, Root::Image),
        disks: args
            .disks
            .iter()
            .map(|(path, read_only)| Disk {
                path: path.clone(),
                read_only: *read_only,
            })
            .collect(),
        env: args.env.clone(),
        working_dir: args.workdir.clone(),
        detach,
        auto_remove,
        kernel_args: args.kernel_args.clone(),
        ready_timeout: args.ready_timeout,
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Run(run) => run_box(&runtime(&cli)?, run),
        Command::Create(args) => {
            let b = runtime(&cli)?.create(box_options(args, true, false))?;
            println!("{}", b.id());
            Ok(0)
        }
        Command::Start { boxes } => each(&runtime(&cli)?, boxes, |b| {
            b.start()?;
            println!("{}", b.id());
            Ok(())
        }),
        Command::Exec(args) => exec_in(&cli, args),
        Command::Stop { boxes } => each(&runtime(&cli)?, boxes, |b| Ok(b.stop()?)),
        Command::Rm { force, boxes } => {
            let rt = runtime(&cli)?;
            each(&rt, boxes, |b| Ok(rt.remove(b.id(), *force)?))
        }
        Command::Ps { all, json } => ps(&runtime(&cli)?, *all, *json),
        Command::Inspect { r#box } => {
            let info = runtime(&cli)?.get(r#box)?.info()?;
            let metrics = runtime(&cli)?.get(r#box)?.metrics()?;
            let doc = serde_json::json!({ "box": info, "metrics": metrics });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(0)
        }
        Command::Logs { follow, r#box } => logs(&runtime(&cli)?.get(r#box)?, *follow),
        Command::Doctor => doctor::run(&cli),
        Command::WaitReady { vsock, timeout } => {
            boxlite_lifecycle::wait_ready(boxlite_lifecycle::ready_listener_path(vsock), *timeout)?;
            Ok(0)
        }
        Command::Shutdown { vsock } => {
            GuestSession::vsock(vsock).shutdown()?;
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "boxlite",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

/// Applies `f` to every named box; all are tried, the first error is returned.
fn each(
    rt: &Runtime,
    boxes: &[String],
    f: impl Fn(&BoxHandle) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    let mut first = None;
    for name in boxes {
        if let Err(e) = rt
            .get(name)
            .map_err(anyhow::Error::from)
            .and_then(|b| f(&b))
        {
            eprintln!("boxlite: {name}: {e:#}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(0), Err)
}

fn run_box(rt: &Runtime, run: &RunArgs) -> anyhow::Result<i32> {
    if run.detach {
        anyhow::ensure!(
            run.command.is_empty(),
            "a detached box runs no command of its own: start it with `boxlite run -d`, then use `boxlite exec BOX -- COMMAND`"
        );
        let b = rt.create(box_options(&run.r#box, true, run.rm))?;
        b.start()?;
        println!("{}", b.id());
        return Ok(0);
    }
    anyhow::ensure!(
        !run.command.is_empty(),
        "no command given: `boxlite run [OPTIONS] -- COMMAND [ARGS...]`"
    );
    let b = rt.create(box_options(&run.r#box, false, false))?;
    let result = (|| {
        b.start()?;
        let request = exec::request(run.command.clone(), Vec::new(), None, &run.exec);
        exec::stream(b.exec(request)?, &run.exec, exec::HOST_TIMEOUT_GRACE)
    })();
    if let Err(e) = b.stop() {
        eprintln!("boxlite: stopping box {}: {e}", b.id());
    }
    if run.rm {
        if let Err(e) = rt.remove(b.id(), true) {
            eprintln!("boxlite: removing box {}: {e}", b.id());
        }
    }
    result
}

fn exec_in(cli: &Cli, args: &ExecArgs) -> anyhow::Result<i32> {
    let request = exec::request(
        args.command.clone(),
        args.env.clone(),
        args.workdir.clone(),
        &args.exec,
    );
    let handle = match (&args.vsock, &args.r#box) {
        (Some(vsock), _) => GuestSession::vsock(vsock).exec(request)?,
        (None, Some(name)) => runtime(cli)?.get(name)?.exec(request)?,
        (None, None) => anyhow::bail!("name a box or give --vsock"),
    };
    exec::stream(handle, &args.exec, exec::HOST_TIMEOUT_GRACE)
}

fn ps(rt: &Runtime, all: bool, json: bool) -> anyhow::Result<i32> {
    let boxes: Vec<_> = rt
        .list()?
        .into_iter()
        .filter(|b| all || b.state.is_active())
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&boxes)?);
        return Ok(0);
    }
    println!(
        "{:<14} {:<20} {:<11} {:>8}  REASON",
        "ID", "NAME", "STATE", "PID"
    );
    for b in boxes {
        let pid = b.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let reason: String = b.reason.unwrap_or_default().chars().take(60).collect();
        println!(
            "{:<14} {:<20} {:<11} {:>8}  {reason}",
            &b.id[..12.min(b.id.len())],
            b.name.as_deref().unwrap_or("-"),
            b.state.name(),
            pid
        );
    }
    Ok(0)
}

fn logs(b: &BoxHandle, follow: bool) -> anyhow::Result<i32> {
    let path = b.info()?.dir.join("console.log");
    let mut out = std::io::stdout().lock();
    let mut offset = 0u64;
    loop {
        if let Ok(mut file) = std::fs::File::open(&path) {
            file.seek(SeekFrom::Start(offset))?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)
                .context("reading the console")?;
            offset += chunk.len() as u64;
            out.write_all(&chunk)?;
            out.flush()?;
        }
        if !follow || !b.state()?.is_active() && b.state()? != BoxState::Configured {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
