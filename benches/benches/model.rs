//! The trained power model's cost (issue 20; budget: 20 µs per zone per tick): one online
//! fit step (add a sample to the sufficient statistics and re-solve the ridge system), the
//! same with the two counter inputs, and one prediction (the `trained` meter's per-zone work).
//!
//! `cargo bench -p kepler-benches --bench model`

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_core::{Features, Input, ZoneFit};

fn fit(c: &mut Criterion) {
    // A fit that has already seen a day of 5 s ticks: the cost does not grow with samples.
    let mut fit = ZoneFit::new(&[Input::Busy]).unwrap();
    for i in 0..17_280u64 {
        let u = (i % 101) as f64 / 100.0;
        fit.observe(&Features::busy(u), 10.0 + 50.0 * u.sqrt());
    }
    let mut i = 0u64;
    c.bench_function("model/fit_one_tick_one_zone", |b| {
        b.iter(|| {
            i += 1;
            let u = (i % 97) as f64 / 96.0;
            assert!(fit.observe(&Features::busy(u), 10.0 + 50.0 * u.sqrt()));
        })
    });
    let mut counters = ZoneFit::new(&[Input::Busy, Input::Cycles, Input::Instructions]).unwrap();
    c.bench_function("model/fit_one_tick_one_zone_with_counters", |b| {
        b.iter(|| {
            i += 1;
            let u = (i % 97) as f64 / 96.0;
            let f = Features {
                busy: u,
                cycles: Some(2.0 * u),
                instructions: Some(3.0 * u),
            };
            assert!(counters.observe(&f, 10.0 + 50.0 * u.sqrt()));
        })
    });
    c.bench_function("model/predict_one_zone", |b| {
        b.iter(|| {
            i += 1;
            let u = (i % 97) as f64 / 96.0;
            std::hint::black_box(fit.predict(&Features::busy(u)))
        })
    });
}

criterion_group!(benches, fit);
criterion_main!(benches);
