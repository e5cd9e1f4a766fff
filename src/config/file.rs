//! Reading the files the exporter is configured with (the config file, secret files, the web
//! config and the certificates it names): regular files only, and never more than a bound.
//!
//! A FIFO would block the reader until some other process writes to it, and a device such as
//! `/dev/zero` reports a length of 0 and never ends: both are refused before a byte is read.
//! The file is opened without blocking (`O_NONBLOCK`, which regular files ignore) and its type
//! is checked on the opened descriptor, so a path swapped for a FIFO between a look and the
//! read cannot block either. The read itself stops one byte past the bound, so a file that
//! grows while it is read is still refused.
//!
//! The files of the kernel's own file systems (procfs, sysfs and the like) pass for regular
//! files of size 0, yet what they hold is made up as they are read: `/proc/self/environ` as a
//! `password_file` would send the process' whole environment to a server. On Linux, the file
//! system of the opened descriptor is looked up (`fstatfs`) and those are refused too.
//!
//! These are blocking reads: async callers run them on a blocking thread
//! (`tokio::task::spawn_blocking`).

use std::fmt;
use std::io::Read as _;
use std::path::Path;

/// Why a file was not read. The message names neither the path (callers add it) nor any of
/// the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is not a regular file (it is {0}); give the path of a file")]
    NotRegular(FileKind),
    #[error("is larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// What a path that is not a regular file turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    Device,
    Socket,
    /// A file of a kernel file system (procfs, sysfs, ...): the name of that file system.
    Kernel(&'static str),
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::Device => "a device",
            FileKind::Socket => "a socket",
            FileKind::Kernel(fs) => {
                return write!(f, "on {fs}, made up by the kernel as it is read");
            }
            FileKind::Other => "not a file",
        })
    }
}

fn kind(t: std::fs::FileType) -> Option<FileKind> {
    if t.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return Some(FileKind::Fifo);
        }
        if t.is_char_device() || t.is_block_device() {
            return Some(FileKind::Device);
        }
        if t.is_socket() {
            return Some(FileKind::Socket);
        }
    }
    Some(if t.is_dir() {
        FileKind::Directory
    } else {
        FileKind::Other
    })
}

/// File systems whose files the kernel makes up as they are read (`linux/magic.h`), by their
/// magic number as `statfs` reports it.
#[cfg(target_os = "linux")]
const KERNEL_FILE_SYSTEMS: &[(u32, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2fs"),
    (0xcafe_4a11, "bpffs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0xde5e_81e4, "efivarfs"),
    (0x6265_6570, "configfs"),
    (0x6165_676c, "pstorefs"),
];

/// The name of the kernel file system `file` is on, if it is on one.
#[cfg(target_os = "linux")]
fn kernel_file_system(file: &std::fs::File) -> std::io::Result<Option<&'static str>> {
    let magic = file_system_magic(file)?;
    Ok(KERNEL_FILE_SYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name))
}

#[cfg(not(target_os = "linux"))]
fn kernel_file_system(_: &std::fs::File) -> std::io::Result<Option<&'static str>> {
    Ok(None)
}

/// The magic number of the file system `file` is on (`fstatfs`' `f_type`; its low 32 bits,
/// which hold every magic number, whatever the width of the field on this platform).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn file_system_magic(file: &std::fs::File) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and `st` is a buffer
    // of the size fstatfs writes; it is read only after fstatfs said it filled it.
    let st = unsafe {
        if libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st.assume_init()
    };
    Ok(st.f_type as u32)
}

/// Reads the regular file at `path` (symbolic links followed), refusing anything else and
/// anything longer than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // A cheap first look: a FIFO is refused without being opened at all.
    if let Some(k) = kind(std::fs::metadata(path)?.file_type()) {
        return Err(ReadError::NotRegular(k));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if let Some(k) = kind(file.metadata()?.file_type()) {
        return Err(ReadError::NotRegular(k));
    }
    if let Some(fs) = kernel_file_system(&file)? {
        return Err(ReadError::NotRegular(FileKind::Kernel(fs)));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 64 * 1024;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dcs-file-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn reads_files_up_to_the_bound() {
        let d = scratch("bound");
        let p = d.join("f");
        std::fs::write(&p, b"12345").expect("write");
        assert_eq!(read_bounded(&p, 5).expect("fits"), b"12345");
        let e = read_bounded(&p, 4).expect_err("too large");
        assert!(matches!(e, ReadError::TooLarge { limit: 4 }), "{e:?}");
        assert_eq!(e.to_string(), "is larger than 4 bytes");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn refuses_devices_and_directories() {
        // /dev/zero reports a length of 0 and never ends.
        let e = read_bounded(Path::new("/dev/zero"), 1024).expect_err("a device");
        assert!(
            matches!(e, ReadError::NotRegular(FileKind::Device)),
            "{e:?}"
        );
        assert!(e.to_string().contains("a device"), "{e}");
        let d = scratch("dir");
        let e = read_bounded(&d, 1024).expect_err("a directory");
        assert!(matches!(e, ReadError::NotRegular(FileKind::Directory)));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let d = scratch("fifo");
        let p = d.join("fifo");
        // mkfifo(1) is the independent way to make one (no unsafe code here).
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Without the check this blocks until a writer opens the FIFO, which never happens:
        // run it on a thread and give up on it rather than hang the test binary.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_bounded(&path, 1024).map(|_| ()));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_bounded returned instead of blocking")
            .expect_err("a FIFO");
        assert!(matches!(e, ReadError::NotRegular(FileKind::Fifo)), "{e:?}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn refuses_kernel_files_that_pass_for_regular_files() {
        // Each is a "regular file" to stat (procfs says of size 0, sysfs of 4096), and has
        // contents when read.
        for (path, fs) in [
            ("/proc/self/environ", "procfs"),
            ("/proc/self/status", "procfs"),
            ("/sys/kernel/mm/transparent_hugepage/enabled", "sysfs"),
        ] {
            let p = Path::new(path);
            let Ok(meta) = std::fs::metadata(p) else {
                eprintln!("{path}: skipped: not on this system");
                continue;
            };
            assert!(meta.is_file(), "{path}: {meta:?}");
            assert!(fs != "procfs" || meta.len() == 0, "{path}: {meta:?}");
            let e = read_bounded(p, MAX).expect_err("a kernel file");
            assert!(
                matches!(e, ReadError::NotRegular(FileKind::Kernel(name)) if name == fs),
                "{path}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "is not a regular file (it is on {fs}, made up by the kernel as it is \
                     read); give the path of a file"
                )
            );
        }
        // A symbolic link into procfs is refused as well: the opened file is checked.
        let d = scratch("proclink");
        std::os::unix::fs::symlink("/proc/self/environ", d.join("pw")).expect("symlink");
        let e = read_bounded(&d.join("pw"), MAX).expect_err("a kernel file");
        assert!(
            matches!(e, ReadError::NotRegular(FileKind::Kernel("procfs"))),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn an_ordinary_file_is_on_no_kernel_file_system() {
        let d = scratch("plainfs");
        std::fs::write(d.join("f"), b"x").expect("write");
        let f = std::fs::File::open(d.join("f")).expect("open");
        assert_eq!(kernel_file_system(&f).expect("fstatfs"), None);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn symlinks_to_files_are_followed() {
        // Kubernetes mounts Secrets and ConfigMaps as symbolic links to files.
        let d = scratch("link");
        std::fs::write(d.join("target"), b"x").expect("write");
        std::os::unix::fs::symlink(d.join("target"), d.join("link")).expect("symlink");
        assert_eq!(read_bounded(&d.join("link"), 10).expect("reads"), b"x");
        let _ = std::fs::remove_dir_all(d);
    }
}
