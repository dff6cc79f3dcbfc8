//! Assembles a VM from its configuration: memory, kernel, boot structures, legacy devices,
//! vCPUs and the event loop, in the order each step depends on the previous.

use std::path::Path;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use boxlite_proto::{ConsoleConfig, VmConfig, DEFAULT_CONSOLE_FILE_CAP};

use crate::arch::mptable;
use crate::boot;
use crate::error::{Error, Result};
use crate::exit_monitor::ExitMonitor;
use crate::layout::{BOOT_TIMER_ADDR, CMOS_PORT, COM1_IRQ, COM1_PORT, I8042_PORT, MAX_VCPUS};
use crate::memory::{create_guest_memory, memory_map};
use crate::virtio::{self, VirtioAttacher};
use crate::vmm::{Subscriber, Vmm};
use crate::vstate::vcpu::Vcpu;
use crate::vstate::vm::Vm;
use boxlite_devices::bus::Bus;
use boxlite_devices::legacy::boot_timer::{process_cpu_time, BootTime, BootTimer, BOOT_TIMER_LEN};
use boxlite_devices::legacy::cmos::{Cmos, CMOS_PORT_COUNT};
use boxlite_devices::legacy::console::{CappedFile, ConsoleSink, ConsoleWriter, PanicWatch};
use boxlite_devices::legacy::i8042::{I8042, I8042_PORT_COUNT};
use boxlite_devices::legacy::serial::{SerialDevice, SERIAL_PORT_COUNT};
use boxlite_devices::legacy::EventFdTrigger;

fn eventfd(what: &'static str) -> Result<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(Error::io(what))
}

/// Opens the console destinations named by `config`.
pub fn console_sinks(config: &ConsoleConfig) -> Result<Vec<ConsoleSink>> {
    let mut sinks = Vec::new();
    if let Some(path) = &config.file {
        let cap = config.file_cap.unwrap_or(DEFAULT_CONSOLE_FILE_CAP);
        let file = CappedFile::open(Path::new(path), cap).map_err(|source| Error::File {
            what: "cannot open console file",
            path: path.clone(),
            source,
        })?;
        sinks.push(ConsoleSink::new(path.clone(), Box::new(file)));
    }
    if config.stdout {
        sinks.push(ConsoleSink::new("stdout", Box::new(std::io::stdout())));
    }
    Ok(sinks)
}

fn validate(config: &VmConfig) -> Result<()> {
    if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
        return Err(Error::InvalidConfig(format!(
            "{} vCPUs requested; boxlite supports 1..={MAX_VCPUS}",
            config.vcpus
        )));
    }
    if config.kernel.is_empty() {
        return Err(Error::InvalidConfig("no kernel image given".to_string()));
    }
    Ok(())
}

/// The kernel command line: the configured one plus an entry per virtio device.
fn full_cmdline(configured: &str, device_entries: &[String]) -> String {
    let mut cmdline = configured.trim().to_string();
    for entry in device_entries {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(entry);
    }
    cmdline
}

/// Loads the kernel, command line and initrd and writes the boot structures and MP table.
fn load_guest(
    memory: &GuestMemoryMmap,
    config: &VmConfig,
    cmdline: &str,
) -> Result<boot::LoadedKernel> {
    let mem_bytes = u64::from(config.mem_mib) << 20;
    let kernel = boot::kernel::load(memory, &config.kernel)?;
    let cmdline_len = boot::cmdline::write(memory, cmdline)?;
    let initrd = match &config.initrd {
        Some(path) => Some(boot::initrd::load(
            memory,
            path,
            kernel.kernel_end,
            mem_bytes,
        )?),
        None => None,
    };
    let map = memory_map(mem_bytes);
    boot::write_boot_info(memory, &kernel, cmdline_len, initrd, &map)?;
    mptable::setup(memory, config.vcpus)?;
    Ok(kernel)
}

/// What the legacy devices hand to the rest of the VM.
struct Legacy {
    pio: Bus,
    reset: EventFd,
    panic_watch: Arc<PanicWatch>,
    boot_time: Arc<Mutex<Option<BootTime>>>,
}

/// COM1, the i8042 and the CMOS on the port bus; the boot timer on the MMIO bus.
fn legacy_devices(
    vm: &Vm,
    console: &ConsoleConfig,
    mmio: &mut Bus,
    start: Instant,
    start_cpu: Duration,
) -> Result<Legacy> {
    let panic_watch = Arc::new(PanicWatch::default());
    let serial_irq = eventfd("creating the serial interrupt eventfd")?;
    vm.fd()
        .register_irqfd(&serial_irq, COM1_IRQ)
        .map_err(Error::kvm("KVM_IRQFD (serial)"))?;
    let console = ConsoleWriter::new(console_sinks(console)?, panic_watch.clone());
    let reset = eventfd("creating the reset eventfd")?;
    let reset_trigger = reset
        .try_clone()
        .map_err(Error::io("cloning the reset eventfd"))?;
    let boot_time = Arc::new(Mutex::new(None));

    let mut pio = Bus::new();
    let serial = SerialDevice::new(EventFdTrigger(serial_irq), console);
    pio.insert(
        u64::from(COM1_PORT),
        SERIAL_PORT_COUNT,
        Arc::new(Mutex::new(serial)),
    )?;
    let i8042 = I8042::new(EventFdTrigger(reset_trigger));
    pio.insert(
        u64::from(I8042_PORT),
        I8042_PORT_COUNT,
        Arc::new(Mutex::new(i8042)),
    )?;
    pio.insert(
        u64::from(CMOS_PORT),
        CMOS_PORT_COUNT,
        Arc::new(Mutex::new(Cmos::default())),
    )?;
    let timer = BootTimer::new(start, start_cpu, boot_time.clone());
    mmio.insert(BOOT_TIMER_ADDR, BOOT_TIMER_LEN, Arc::new(Mutex::new(timer)))?;
    Ok(Legacy {
        pio,
        reset,
        panic_watch,
        boot_time,
    })
}

/// Logs how long each step of the VM build took, at debug level (the hot start-up path).
struct StageTimer {
    last: Instant,
}

impl StageTimer {
    fn new(start: Instant) -> StageTimer {
        StageTimer { last: start }
    }

    /// Logs the step that just ended.
    fn done(&mut self, step: &str) {
        let now = Instant::now();
        log::debug!("build: {step} in {} us", (now - self.last).as_micros());
        self.last = now;
    }
}

/// Builds a VM ready to [`Vmm::run`]. Timing for the boot timer starts here.
pub fn build_vm(config: &VmConfig) -> Result<Vmm> {
    let start = Instant::now();
    let start_cpu = process_cpu_time();
    validate(config)?;
    let mut stages = StageTimer::new(start);

    let vm = Vm::new()?;
    stages.done("KVM VM");
    let memory = Arc::new(create_guest_memory(config.mem_mib)?);
    vm.register_memory(&memory)?;
    stages.done("guest memory");

    // Devices first: their command-line entries are part of what the kernel is handed.
    let mut mmio = Bus::new();
    let mut attacher = VirtioAttacher::new(&vm, &memory, &mut mmio);
    virtio::attach_configured(&mut attacher, config)?;
    let (device_entries, device_subscribers) = attacher.finish();
    let legacy = legacy_devices(&vm, &config.console, &mut mmio, start, start_cpu)?;
    stages.done("devices");
    let kernel = load_guest(
        &memory,
        config,
        &full_cmdline(&config.cmdline, &device_entries),
    )?;
    stages.done("kernel and initrd");
    let (pio, mmio) = (Arc::new(legacy.pio), Arc::new(mmio));

    // vCPUs.
    let base_cpuid = vm.supported_cpuid()?;
    let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
    for index in 0..config.vcpus {
        let vcpu = Vcpu::new(&vm, index, pio.clone(), mmio.clone())?;
        vcpu.configure(&base_cpuid, config.vcpus, &memory, kernel.entry)?;
        vcpus.push(vcpu);
    }
    stages.done("vCPUs");

    // Event loop: the exit monitor and every device backend.
    let vcpu_stopped = eventfd("creating the vCPU stop eventfd")?;
    let shutdown = eventfd("creating the shutdown eventfd")?;
    let (vcpu_reports, reports) = channel();
    let monitor = Arc::new(Mutex::new(ExitMonitor::new(
        vcpu_stopped
            .try_clone()
            .map_err(Error::io("cloning the vCPU stop eventfd"))?,
        reports,
        legacy.reset,
        shutdown
            .try_clone()
            .map_err(Error::io("cloning the shutdown eventfd"))?,
        legacy.panic_watch,
    )));
    let mut event_manager = EventManager::<Subscriber>::new().map_err(|e| Error::Io {
        what: "creating the event loop",
        source: std::io::Error::other(format!("{e:?}")),
    })?;
    event_manager.add_subscriber(monitor.clone());
    for subscriber in device_subscribers {
        event_manager.add_subscriber(subscriber);
    }

    stages.done("event loop");
    log::info!(
        "VM built in {} us: {} MiB, {} vCPU(s), {} virtio device(s), kernel entry {:?}",
        start.elapsed().as_micros(),
        config.mem_mib,
        config.vcpus,
        device_entries.len(),
        kernel.entry
    );
    Ok(Vmm {
        vcpus,
        event_manager,
        monitor,
        vcpu_stopped,
        vcpu_reports,
        shutdown,
        boot_time: legacy.boot_time,
        vm,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            kernel: "/boot/vmlinux".into(),
            initrd: None,
            cmdline: String::new(),
            mem_mib: 64,
            vcpus: 1,
            console: ConsoleConfig::default(),
            disks: Vec::new(),
            vsock: None,
        }
    }

    #[test]
    fn device_entries_are_appended_to_the_command_line() {
        let entries = vec!["virtio_mmio.device=4K@0xc0001000:5".to_string()];
        assert_eq!(
            full_cmdline(" console=ttyS0 ", &entries),
            "console=ttyS0 virtio_mmio.device=4K@0xc0001000:5"
        );
        assert_eq!(full_cmdline("", &entries), entries[0]);
        assert_eq!(full_cmdline("quiet", &[]), "quiet");
    }

    #[test]
    fn vcpu_counts_are_bounded() {
        assert!(validate(&config()).is_ok());
        for vcpus in [0, MAX_VCPUS + 1] {
            let err = validate(&VmConfig { vcpus, ..config() }).unwrap_err();
            assert!(err.to_string().contains("vCPUs"), "{err}");
        }
        assert!(validate(&VmConfig {
            kernel: String::new(),
            ..config()
        })
        .is_err());
    }

    #[test]
    fn console_file_is_opened_for_append_and_bad_paths_are_named() {
        let dir = std::env::temp_dir().join(format!("boxlite-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.log");
        std::fs::write(&path, b"old\n").unwrap();
        let sinks = console_sinks(&ConsoleConfig {
            file: Some(path.to_str().unwrap().into()),
            stdout: false,
            file_cap: None,
        })
        .unwrap();
        assert_eq!(sinks.len(), 1);
        let mut writer = ConsoleWriter::new(sinks, Arc::default());
        std::io::Write::write_all(&mut writer, b"new\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old\nnew\n");
        let bad = ConsoleConfig {
            file: Some("/nonexistent-dir/console.log".into()),
            stdout: false,
            file_cap: None,
        };
        let err = console_sinks(&bad).err().unwrap();
        assert!(
            err.to_string().contains("/nonexistent-dir/console.log"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
