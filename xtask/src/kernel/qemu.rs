//! Finding (or installing) QEMU and OVMF, and booting the image with a timeout.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian/Ubuntu packages that provide what the boot needs.
const PACKAGES: [&str; 2] = ["qemu-system-x86", "ovmf"];
const QEMU: &str = "qemu-system-x86_64";

/// OVMF firmware: the code (read-only flash) and a template of its variable store.
pub struct Ovmf {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Where distributions put OVMF (code, vars); `OVMF_CODE`/`OVMF_VARS` override.
const OVMF_CANDIDATES: [(&str, &str); 4] = [
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
];

fn find_ovmf() -> Option<Ovmf> {
    if let (Some(code), Some(vars)) = (std::env::var_os("OVMF_CODE"), std::env::var_os("OVMF_VARS"))
    {
        return Some(Ovmf {
            code: code.into(),
            vars: vars.into(),
        });
    }
    OVMF_CANDIDATES
        .iter()
        .map(|(code, vars)| (Path::new(code), Path::new(vars)))
        .find(|(code, vars)| code.is_file() && vars.is_file())
        .map(|(code, vars)| Ovmf {
            code: code.into(),
            vars: vars.into(),
        })
}

fn have_qemu() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// QEMU and OVMF, installed with apt-get when missing and this runs as root.
pub fn ensure_installed() -> Result<Ovmf, String> {
    if have_qemu()
        && let Some(ovmf) = find_ovmf()
    {
        return Ok(ovmf);
    }
    let how = format!(
        "the boot needs {QEMU} and OVMF: install the packages `{}` (Debian/Ubuntu: \
         `sudo apt-get install {}`), or set OVMF_CODE and OVMF_VARS to the firmware files",
        PACKAGES.join("` and `"),
        PACKAGES.join(" ")
    );
    let apt = Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !is_root() || !apt.is_ok_and(|s| s.success()) {
        return Err(how);
    }
    eprintln!("xtask: installing {} with apt-get", PACKAGES.join(" "));
    crate::shell::run(Command::new("apt-get").arg("update"))?;
    crate::shell::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    match (have_qemu(), find_ovmf()) {
        (true, Some(ovmf)) => Ok(ovmf),
        _ => Err(format!(
            "apt-get install finished but the firmware is still missing; {how}"
        )),
    }
}

/// How the firmware finds the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loader {
    /// `-kernel image.efi`: OVMF loads it from QEMU's fw_cfg.
    Kernel,
    /// A FAT directory with `EFI/BOOT/BOOTX64.EFI`, the removable-media boot path.
    Esp,
    /// The image is tdx-sim (loaded with `-kernel`), which runs `tdvf` as a TD with `kernel` as
    /// the TD's kernel, both passed as fw_cfg files. The machine gets 48 physical address bits
    /// (the TD's shared bit is bit 47) and the memory the TD and tdx-sim need.
    TdxSim {
        /// The TDVF image (OVMF.fd with TDVF metadata).
        tdvf: PathBuf,
        /// The TD's kernel.
        kernel: PathBuf,
    },
}

/// Where Debian (and derivatives) install the OVMF image that carries TDVF metadata.
const TDVF_CANDIDATES: [&str; 2] = ["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

/// The TDVF image: `TDVF` from the environment, or Debian's `ovmf` package's `OVMF.fd`.
pub fn find_tdvf() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TDVF") {
        return Ok(path.into());
    }
    TDVF_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no TDVF image: install the `ovmf` package (it has {}) or set TDVF",
                TDVF_CANDIDATES[0]
            )
        })
}

/// What one boot printed and how QEMU ended.
pub struct Boot {
    pub serial: String,
    pub status: Option<i32>,
    pub timed_out: bool,
}

/// Boots `image` on q35/TCG with 4 vCPUs, echoing the serial console as it arrives.
pub fn boot(
    image: &Path,
    work: &Path,
    ovmf: &Ovmf,
    loader: &Loader,
    timeout: Duration,
) -> Result<Boot, String> {
    let vars = work.join("OVMF_VARS.fd");
    std::fs::copy(&ovmf.vars, &vars).map_err(|e| format!("{}: {e}", ovmf.vars.display()))?;
    let mut cmd = Command::new(QEMU);
    let (cpu, memory) = match loader {
        // The TD's 3 GiB (2 GiB of it contiguous) and tdx-sim's own memory.
        Loader::TdxSim { .. } => ("max,phys-bits=48", "6G"),
        _ => ("max", "1G"),
    };
    cmd.args(["-machine", "q35", "-accel", "tcg", "-smp", "4"])
        .args(["-cpu", cpu, "-m", memory])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            ovmf.code.display()
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .args([
            "-serial",
            "stdio",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-net",
            "none",
        ]);
    match loader {
        Loader::Kernel => {
            cmd.arg("-kernel").arg(image);
        }
        Loader::TdxSim { tdvf, kernel } => {
            // No display adapter: TDVF would clear its framebuffer one TDVMCALL per pixel.
            cmd.args(["-vga", "none"]);
            cmd.arg("-kernel").arg(image);
            cmd.arg("-fw_cfg")
                .arg(format!("name=opt/tdx-sim/tdvf,file={}", tdvf.display()));
            cmd.arg("-fw_cfg")
                .arg(format!("name=opt/tdx-sim/kernel,file={}", kernel.display()));
        }
        Loader::Esp => {
            let esp = work.join("esp");
            let boot_dir = esp.join("EFI/BOOT");
            std::fs::create_dir_all(&boot_dir)
                .map_err(|e| format!("{}: {e}", boot_dir.display()))?;
            std::fs::copy(image, boot_dir.join("BOOTX64.EFI")).map_err(|e| format!("ESP: {e}"))?;
            cmd.arg("-drive")
                .arg(format!("format=raw,file=fat:rw:{}", esp.display()));
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    eprintln!("+ {cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("{QEMU}: {e}"))?;
    let stdout = child.stdout.take().ok_or("QEMU stdout")?;
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut lines = BufReader::new(stdout);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            print!("{text}");
            let _ = std::io::stdout().flush();
            log.push_str(&text);
            line.clear();
        }
        log
    });
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{QEMU}: {e}"))? {
            break (status.code(), false);
        }
        if Instant::now() >= deadline {
            // The child is ours; kill only it.
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let serial = reader.join().unwrap_or_default();
    Ok(Boot {
        serial,
        status,
        timed_out,
    })
}
