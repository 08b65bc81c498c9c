//! The `trained` CPU meter's file side (issue 20): reading and writing a
//! [`kepler_core::PowerModel`] as JSON, and the check that a model fits this machine.
//!
//! A metered node fits the model online (`kepler-runtime`) and writes it with
//! [`write_model`] (`model.export`); a node without a meter loads it with [`load_model`]
//! (`model.file`) and estimates with it through [`crate::Model::trained`]. A model is only
//! as good as the machine it was learnt on: the file records the CPU's `model name`,
//! sockets and cores, and [`build`] refuses a model from another kind of machine unless the
//! user accepts it (`model.acceptMismatch`), because a Xeon's watts say little about an EPYC's.

use std::io::Write;
use std::path::{Path, PathBuf};

use kepler_core::{CpuIdentity, PowerModel};

use crate::model::Model;
use crate::{Error, ErrorKind};

/// Largest model file read: a model is a few hundred bytes per zone.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Where the `trained` meter finds its model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainedOptions {
    /// The model file (`model.file`); `None`: the meter does not build.
    pub file: Option<PathBuf>,
    /// Use a model trained on another CPU model, socket or core count
    /// (`model.acceptMismatch`).
    pub accept_mismatch: bool,
}

/// Reads and validates a model file. Errors name the file and the bad field.
pub fn load_model(path: &Path) -> Result<PowerModel, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, &e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::Parse,
            Some(path),
            format!(
                "power model file is {} bytes, more than {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    parse_model(path, &text)
}

/// Parses and validates the text of a model file; `path` only names it in errors. Any
/// input gives a model whose every zone predicts finite watts, or an error (fuzzed:
/// `fuzz/fuzz_targets/power_model.rs`).
pub fn parse_model(path: &Path, text: &[u8]) -> Result<PowerModel, Error> {
    let model: PowerModel = serde_json::from_slice(text).map_err(|e| {
        Error::new(
            ErrorKind::Parse,
            Some(path),
            format!("not a power model file: {e}"),
        )
    })?;
    model
        .validate()
        .map_err(|e| Error::new(ErrorKind::Parse, Some(path), e.to_string()))?;
    Ok(model)
}

/// Writes `model` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`, so a reader sees the old model or the new one, never half of one.
pub fn write_model(path: &Path, model: &PowerModel) -> Result<(), Error> {
    let mut text = serde_json::to_vec_pretty(model)
        .map_err(|e| Error::new(ErrorKind::Io, Some(path), e.to_string()))?;
    text.push(b'\n');
    let name = path.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            Some(path),
            "model export path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, &e)
    })
}

/// The identity of this machine's CPU, from `<procfs_root>/cpuinfo`.
pub fn machine_identity(procfs_root: &Path) -> Result<CpuIdentity, Error> {
    Ok(CpuIdentity::from_cpus(&crate::read_cpuinfo(procfs_root)?))
}

/// Builds the `trained` meter: loads `opts.file`, checks it against this machine's CPU and
/// estimates with it.
///
/// Fails with [`ErrorKind::NotFound`] when no file is configured (the meter is simply
/// skipped), and with [`ErrorKind::InvalidConfig`] when the model was trained on another
/// CPU and `accept_mismatch` is off; the message says what differs and which key accepts it.
pub fn build(procfs_root: &Path, sysfs_root: &Path, opts: &TrainedOptions) -> Result<Model, Error> {
    let Some(file) = &opts.file else {
        return Err(Error::new(
            ErrorKind::NotFound,
            None,
            "no model.file configured",
        ));
    };
    let model = load_model(file)?;
    let machine = machine_identity(procfs_root)?;
    if let Some(why) = model.cpu.mismatch(&machine) {
        if !opts.accept_mismatch {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                Some(file),
                format!(
                    "power model {} was trained on another CPU: {why}; set model.acceptMismatch: true to use it anyway",
                    model.id
                ),
            ));
        }
        tracing::warn!(model = %model.id, differences = %why, "using a power model trained on another CPU (model.acceptMismatch)");
    }
    Model::trained(procfs_root, sysfs_root, &model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kepler_core::{
        Features, Input, PowerFrame, PowerSource, Reading, Timestamp, ZoneFit, ZoneKind,
    };

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 1\n\n";

    fn model(cpu: CpuIdentity) -> PowerModel {
        let mut fit = ZoneFit::new(&[Input::Busy]).unwrap();
        for i in 0..200 {
            let u = (i % 11) as f64 / 10.0;
            fit.observe(&Features::busy(u), 10.0 + 50.0 * u);
        }
        PowerModel::new(
            cpu,
            fit.inputs(),
            fit.knots().to_vec(),
            vec![fit.to_zone_model(ZoneKind::Package, 0).unwrap()],
        )
    }

    fn proc_tree(stat: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cpuinfo"), CPUINFO).unwrap();
        std::fs::write(d.path().join("stat"), stat).unwrap();
        d
    }

    fn this_cpu() -> CpuIdentity {
        CpuIdentity {
            model_name: "Test CPU".into(),
            sockets: 1,
            cores: 2,
        }
    }

    #[test]
    fn write_then_load_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("model.json");
        let m = model(this_cpu());
        write_model(&path, &m).unwrap();
        assert_eq!(load_model(&path).unwrap(), m);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"version\": 1") && text.contains("\"model_name\": \"Test CPU\""),
            "{text}"
        );
    }

    #[test]
    fn load_names_the_file_and_the_field() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("m.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = load_model(&path).unwrap_err().to_string();
        assert!(
            e.contains("m.json") && e.contains("not a power model"),
            "{e}"
        );
        let mut m = model(this_cpu());
        m.version = 7;
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = load_model(&path).unwrap_err().to_string();
        assert!(e.contains("version") && e.contains('7'), "{e}");
        let e = load_model(&d.path().join("absent.json")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn refuses_another_cpu_unless_accepted() {
        let procfs = proc_tree("cpu0 0 0 0 100 0 0 0 0 0 0\n");
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("m.json");
        let other = CpuIdentity {
            model_name: "Other CPU".into(),
            ..this_cpu()
        };
        write_model(&path, &model(other)).unwrap();
        let mut opts = TrainedOptions {
            file: Some(path),
            accept_mismatch: false,
        };
        let e = build(procfs.path(), d.path(), &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let msg = e.to_string();
        assert!(
            msg.contains("\"Other CPU\"")
                && msg.contains("\"Test CPU\"")
                && msg.contains("model.acceptMismatch"),
            "{msg}"
        );
        opts.accept_mismatch = true;
        assert!(build(procfs.path(), d.path(), &opts).is_ok());
        let none = TrainedOptions::default();
        assert_eq!(
            build(procfs.path(), d.path(), &none).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn estimates_from_utilisation_with_the_model_id() {
        // Two reads of /proc/stat: 60 busy and 40 idle jiffies in between.
        let procfs = proc_tree("cpu0 0 0 0 100 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0 0 0\n");
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("m.json");
        let m = model(this_cpu());
        write_model(&path, &m).unwrap();
        let opts = TrainedOptions {
            file: Some(path),
            accept_mismatch: false,
        };
        let mut meter = build(procfs.path(), d.path(), &opts).unwrap();
        let z = meter.zones()[0].clone();
        assert!(z.estimated && z.source == kepler_core::SourceKind::Model && z.path == "trained");
        let mut frame = PowerFrame::default();
        meter.read(Timestamp(0), &mut frame);
        std::fs::write(
            procfs.path().join("stat"),
            "cpu0 30 0 0 120 0 0 0 0 0 0\ncpu1 30 0 0 120 0 0 0 0 0 0\n",
        )
        .unwrap();
        frame.clear();
        meter.read(Timestamp(1), &mut frame);
        let Ok(Reading::Power(w)) = frame.samples[0].reading else {
            panic!("{:?}", frame.samples[0]);
        };
        // 60 % busy on a model of 10 + 50 u: 40 W.
        assert!((w.as_watts() - 40.0).abs() < 0.2, "{w:?}");
        let mut report = kepler_core::SourceReport::default();
        meter.report(Timestamp(1), &mut report);
        let labels = &report.zone(&z.id).unwrap().labels;
        assert_eq!(&labels[..], &[("model_id", m.id.clone())]);
    }
}
