//! The one rule for turning an I/O error on a host file into a per-item [`ReadError`].
//!
//! "Not there" and "not permitted" are expected states on many machines (style rule 7): they
//! get their own variants, and a permission error says which access would fix it, so the
//! log line a user sees names the capability, file mode or udev rule to change. Every
//! reader of this crate (procfs, the model, RAPL, hwmon) and kepler-bpf classify through
//! [`read_error`]; only the access named differs.

use std::io;

use kepler_core::ReadError;

/// `ENODATA`: the attribute exists but has no value yet (the ACPI power meter before its
/// first average). Reported as missing, like a file that is not there.
const ENODATA: i32 = 61;

/// What access a host file needs: named in [`ReadError::NotPermitted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Files under the procfs root (`/proc/stat`, `/proc/<pid>/*`).
    Procfs,
    /// RAPL `energy_uj`, root-only on most kernels since CVE-2020-8694.
    RaplEnergy,
    /// A hwmon channel attribute (root-only on some drivers).
    Hwmon,
}

impl Access {
    /// The privilege or permission that grants this access, as a user would act on it.
    pub fn needs(self) -> &'static str {
        match self {
            Access::Procfs => "read access to procfs (mount the host's /proc readable)",
            Access::RaplEnergy => {
                "run as root, or grant read access to energy_uj, e.g. a udev rule / chmod; \
                 see CVE-2020-8694"
            }
            Access::Hwmon => "read access to the hwmon attribute (root on some drivers)",
        }
    }
}

/// The [`ReadError`] of reading `what` (a path or item name) that failed with `err`:
/// [`ReadError::Missing`] for not-found and `ENODATA`, [`ReadError::NotPermitted`] naming
/// `access`'s privilege for a permission error, [`ReadError::Io`] for anything else.
pub fn read_error(what: &str, err: &io::Error, access: Access) -> ReadError {
    match err.kind() {
        io::ErrorKind::NotFound => ReadError::Missing {
            what: what.to_owned(),
        },
        io::ErrorKind::PermissionDenied => ReadError::NotPermitted {
            what: what.to_owned(),
            needs: access.needs().to_owned(),
        },
        _ if err.raw_os_error() == Some(ENODATA) => ReadError::Missing {
            what: what.to_owned(),
        },
        _ => ReadError::Io {
            what: what.to_owned(),
            detail: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_variant_and_permission_names_the_access() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let r = read_error(
            "/sys/class/powercap/intel-rapl:0/energy_uj",
            &denied,
            Access::RaplEnergy,
        );
        match r {
            ReadError::NotPermitted { what, needs } => {
                assert!(what.ends_with("energy_uj"));
                assert!(needs.contains("CVE-2020-8694"), "{needs}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let r = read_error("/proc/stat", &denied, Access::Procfs);
        assert!(matches!(r, ReadError::NotPermitted { ref needs, .. } if needs.contains("procfs")));
        let r = read_error(
            "x",
            &io::Error::from(io::ErrorKind::NotFound),
            Access::Hwmon,
        );
        assert_eq!(r, ReadError::Missing { what: "x".into() });
        let r = read_error("x", &io::Error::from_raw_os_error(ENODATA), Access::Hwmon);
        assert_eq!(r, ReadError::Missing { what: "x".into() });
        let r = read_error("x", &io::Error::other("boom"), Access::Procfs);
        assert_eq!(r.kind_label(), "io");
    }
}
