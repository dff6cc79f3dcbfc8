//! `boxlite doctor`: can this host run boxes, and is everything in place?

use std::path::Path;

use boxlite_lifecycle::Assets;

use crate::args::Cli;

/// How this host virtualises.
#[derive(Debug, PartialEq, Eq)]
enum Kvm {
    /// Hardware virtualization (svm or vmx): boxes run natively.
    Hardware(&'static str),
    /// A software PVM hypervisor behind /dev/kvm: tiny bare-metal guests only, no Linux.
    Pvm,
    /// No /dev/kvm.
    None,
}

fn kvm_kind(cpuinfo: &str, pvm_module: bool, dev_kvm: bool) -> Kvm {
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    match (dev_kvm, pvm_module) {
        (false, _) => Kvm::None,
        (true, true) => Kvm::Pvm,
        (true, false) if has("vmx") => Kvm::Hardware("vmx (Intel VT-x)"),
        (true, false) if has("svm") => Kvm::Hardware("svm (AMD-V)"),
        (true, false) => Kvm::Pvm,
    }
}

/// Prints one check per line; status 0 when boxes can run here.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    let mut ok = true;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let kind = kvm_kind(
        &cpuinfo,
        Path::new("/sys/module/kvm_pvm").exists(),
        Path::new("/dev/kvm").exists(),
    );
    match kind {
        Kvm::Hardware(what) => println!("ok    virtualization: {what}, /dev/kvm present"),
        Kvm::Pvm => {
            ok = false;
            println!(
                "FAIL  virtualization: /dev/kvm is a software hypervisor (PVM, no svm/vmx): it runs tiny \
                 bare-metal guests but not Linux; use a host with hardware virtualization, or the e2e \
                 harness (scripts/test-harness.sh) that emulates AMD-V"
            );
        }
        Kvm::None => {
            ok = false;
            println!("FAIL  virtualization: no /dev/kvm (load kvm_intel or kvm_amd, or enable virtualization)");
        }
    }
    if kind != Kvm::None {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            Ok(_) => println!("ok    /dev/kvm is readable and writable by this user"),
            Err(e) => {
                ok = false;
                println!("FAIL  /dev/kvm: {e} (add this user to the kvm group)");
            }
        }
    }
    let assets = Assets {
        shim: cli.shim.clone(),
        kernel: cli.kernel.clone(),
        initrd: cli.initrd.clone(),
    };
    for (what, found) in [
        ("shim", assets.shim()),
        ("kernel", assets.kernel()),
        ("initramfs", assets.initrd()),
    ] {
        match found {
            Ok(path) => println!("ok    {what}: {}", path.display()),
            Err(e) => {
                ok = false;
                println!("FAIL  {what}: {e}");
            }
        }
    }
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_told_apart_by_cpu_flags_and_the_pvm_module() {
        let vmx = "flags\t: fpu vmx sse\n";
        let svm = "flags\t: fpu svm\n";
        let plain = "flags\t: fpu sse\n";
        assert_eq!(
            kvm_kind(vmx, false, true),
            Kvm::Hardware("vmx (Intel VT-x)")
        );
        assert_eq!(kvm_kind(svm, false, true), Kvm::Hardware("svm (AMD-V)"));
        assert_eq!(kvm_kind(plain, true, true), Kvm::Pvm);
        assert_eq!(kvm_kind(plain, false, true), Kvm::Pvm);
        assert_eq!(kvm_kind(vmx, false, false), Kvm::None);
    }
}
