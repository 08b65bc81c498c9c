//! The DRM client usage stats of one `/proc/<pid>/fdinfo/<fd>` (the kernel's
//! `Documentation/gpu/drm-usage-stats.rst`): one `key: value [unit]` per line, every key
//! prefixed `drm-`. Only what attribution needs is kept: the driver, the client id, the PCI
//! address, and per engine its busy time (`drm-engine-<e>: <n> ns`) or busy cycles
//! (`drm-cycles-<e>`) with the matching GPU timestamp (`drm-total-cycles-<e>`, xe) or maximum
//! frequency (`drm-maxfreq-<e>`). Memory keys and the fdinfo header (`pos`, `flags`...) are
//! skipped; a malformed line is skipped, never a panic.

/// One engine's counters as one fdinfo shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Engine name as the driver spells it (`gfx`, `render`, `rcs`, `vertex-tiler`...).
    pub name: String,
    /// `drm-engine-<e>`: busy time in nanoseconds.
    pub busy_ns: Option<u64>,
    /// `drm-cycles-<e>`: busy cycles.
    pub cycles: Option<u64>,
    /// `drm-total-cycles-<e>`: the GPU timestamp in the unit of `cycles` (xe).
    pub total_cycles: Option<u64>,
    /// `drm-maxfreq-<e>` in Hz.
    pub max_freq_hz: Option<u64>,
}

/// The usage stats of one DRM file description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrmFdinfo {
    /// `drm-driver` (mandatory: an fdinfo without it is not a DRM client's).
    pub driver: String,
    /// `drm-client-id`: one per `struct drm_file`, shared by dup'ed and inherited fds.
    pub client_id: Option<u64>,
    /// `drm-pdev`: the PCI slot, e.g. `0000:03:00.0`.
    pub pdev: Option<String>,
    /// Engines in the order first seen.
    pub engines: Vec<EngineCounters>,
}

impl DrmFdinfo {
    /// Parses fdinfo text. `None` when it has no `drm-driver` line (not a DRM client, or a
    /// driver without usage stats).
    pub fn parse(text: &str) -> Option<DrmFdinfo> {
        let mut info = DrmFdinfo::default();
        let mut has_driver = false;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Some(key) = key.trim().strip_prefix("drm-") else {
                continue;
            };
            let mut words = value.split_whitespace();
            let Some(first) = words.next() else {
                continue;
            };
            match key {
                "driver" => {
                    info.driver = first.to_owned();
                    has_driver = true;
                }
                "client-id" => info.client_id = first.parse().ok(),
                "pdev" => info.pdev = Some(first.to_owned()),
                _ => info.engine_key(key, first, words.next()),
            }
        }
        has_driver.then_some(info)
    }

    /// Files an engine key (`engine-`, `cycles-`, `total-cycles-`, `maxfreq-`); other keys
    /// (memory, capacity, current frequency, driver extras) are ignored.
    fn engine_key(&mut self, key: &str, value: &str, unit: Option<&str>) {
        let Ok(n) = value.parse::<u64>() else {
            return;
        };
        // `engine-capacity-<e>` shares the `engine-` prefix and is not a busy time.
        if key.starts_with("engine-capacity-") {
            return;
        }
        if let Some(name) = key.strip_prefix("engine-") {
            // The unit is `ns`, the only one the specification defines.
            if unit.is_none_or(|u| u == "ns") {
                self.engine(name).busy_ns = Some(n);
            }
        } else if let Some(name) = key.strip_prefix("total-cycles-") {
            self.engine(name).total_cycles = Some(n);
        } else if let Some(name) = key.strip_prefix("cycles-") {
            self.engine(name).cycles = Some(n);
        } else if let Some(name) = key.strip_prefix("maxfreq-") {
            let scale = match unit {
                None | Some("Hz") => 1,
                Some("KHz") | Some("kHz") => 1_000,
                Some("MHz") => 1_000_000,
                Some(_) => return,
            };
            self.engine(name).max_freq_hz = n.checked_mul(scale);
        }
    }

    fn engine(&mut self, name: &str) -> &mut EngineCounters {
        match self.engines.iter().position(|e| e.name == name) {
            Some(i) => &mut self.engines[i],
            None => {
                self.engines.push(EngineCounters {
                    name: name.to_owned(),
                    ..EngineCounters::default()
                });
                self.engines.last_mut().expect("just pushed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amdgpu_shape() {
        let text = "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t1234\ndrm-driver:\tamdgpu\n\
            drm-pdev:\t0000:03:00.0\ndrm-client-id:\t42\npasid:\t32771\n\
            drm-memory-vram:\t123456 KiB\ndrm-memory-gtt:\t2048 KiB\n\
            drm-engine-gfx:\t1234567890 ns\ndrm-engine-compute:\t100 ns\n\
            drm-engine-dec:\t0 ns\n";
        let info = DrmFdinfo::parse(text).unwrap();
        assert_eq!(info.driver, "amdgpu");
        assert_eq!(info.client_id, Some(42));
        assert_eq!(info.pdev.as_deref(), Some("0000:03:00.0"));
        let busy: Vec<_> = info
            .engines
            .iter()
            .map(|e| (e.name.as_str(), e.busy_ns))
            .collect();
        assert_eq!(
            busy,
            [
                ("gfx", Some(1_234_567_890)),
                ("compute", Some(100)),
                ("dec", Some(0))
            ]
        );
    }

    #[test]
    fn i915_capacity_is_not_busy_time() {
        let text = "drm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\ndrm-client-id:\t7\n\
            drm-engine-render:\t9000 ns\ndrm-engine-video:\t500 ns\n\
            drm-engine-capacity-video:\t2\ndrm-engine-video-enhance:\t0 ns\n";
        let info = DrmFdinfo::parse(text).unwrap();
        let names: Vec<_> = info.engines.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["render", "video", "video-enhance"]);
        assert_eq!(info.engines[1].busy_ns, Some(500));
    }

    #[test]
    fn xe_cycles_and_panfrost_frequency() {
        let xe = DrmFdinfo::parse(
            "drm-driver:\txe\ndrm-client-id:\t3\ndrm-cycles-rcs:\t28257900\n\
             drm-total-cycles-rcs:\t7655183225\ndrm-engine-capacity-vcs:\t2\n",
        )
        .unwrap();
        assert_eq!(xe.engines[0].cycles, Some(28_257_900));
        assert_eq!(xe.engines[0].total_cycles, Some(7_655_183_225));
        assert_eq!(xe.engines[0].busy_ns, None);
        let pf = DrmFdinfo::parse(
            "drm-driver:\tpanfrost\ndrm-client-id:\t14\ndrm-engine-fragment:\t1846584880 ns\n\
             drm-cycles-fragment:\t1424359409\ndrm-maxfreq-fragment:\t799 MHz\n",
        )
        .unwrap();
        assert_eq!(pf.engines[0].max_freq_hz, Some(799_000_000));
        assert_eq!(pf.engines[0].busy_ns, Some(1_846_584_880));
    }

    #[test]
    fn not_a_drm_client_and_junk() {
        assert_eq!(DrmFdinfo::parse("pos:\t0\nflags:\t0100002\n"), None);
        let info = DrmFdinfo::parse(
            "drm-driver:\tv3d\ndrm-client-id:\tx\ndrm-engine-bin:\t-5 ns\n:::\ndrm-engine-\n",
        )
        .unwrap();
        assert_eq!(info.client_id, None);
        assert!(info.engines.is_empty());
    }
}
