//! Micro-benchmarks of the `/metrics` path on a snapshot of 300 instances × (100 hot keys +
//! 100 big keys): a full rendering, a scrape of an unchanged snapshot (plain and gzip), a scrape
//! after a state change (re-assembly without re-rendering any key), and after one new result.
//!
//! Run with `cargo bench --bench exposition`; see BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dcs_key_exporter::dcs::{
    Analysis, KeyRecord, KeyType, ScanType, SizeUnit, TaskRecord, TaskStatus,
};
use dcs_key_exporter::metrics::exposition::Exposition;
use dcs_key_exporter::metrics::render::{render_snapshot, RenderOptions};
use dcs_key_exporter::metrics::store::{AnalysisSpec, InstanceSpec, Store};

const INSTANCES: usize = 300;
const KEYS: usize = 100;

fn id(i: usize) -> String {
    format!("{i:08x}-cebf-4473-95c4-d1b573c16e79")
}

fn task(i: usize, analysis: Analysis, generation: usize) -> TaskRecord {
    let keys = (0..KEYS)
        .map(|k| {
            let (key_type, unit) = match (analysis, k % 3) {
                (Analysis::Hotkey, 0) | (Analysis::Bigkey, 0) => (KeyType::String, SizeUnit::Byte),
                (_, 1) => (KeyType::Hash, SizeUnit::Count),
                _ => (KeyType::Zset, SizeUnit::Count),
            };
            KeyRecord {
                name: format!("user:{}:session:{generation}", i * 1000 + k),
                key_type: Some(key_type),
                shard: (i % 3 == 0).then(|| format!("192.168.0.{}:6379", 10 + k % 4)),
                db: Some(0),
                size: Some(1_000_000 - k as i64 * 997),
                unit: Some(unit),
                freq: (analysis == Analysis::Hotkey).then_some(250 - k as i64),
                memory: None,
                rates: None,
            }
        })
        .collect();
    TaskRecord {
        id: format!("task-{i}-{analysis}-{generation}"),
        instance_id: Some(id(i)),
        status: TaskStatus::Success,
        scan_type: Some(ScanType::Manual),
        created_at: Some("2024-01-01T00:00:00Z".into()),
        started_at: Some("2024-01-01T00:00:02Z".into()),
        finished_at: Some(format!("2024-01-01T00:{:02}:10Z", generation % 60)),
        num: Some(5000),
        keys: Some(keys),
    }
}

fn fleet() -> Arc<Store> {
    let store = Arc::new(Store::new());
    let specs: Vec<InstanceSpec> = (0..INSTANCES)
        .map(|i| InstanceSpec {
            id: id(i),
            name: format!("prod-orders-cache-{i:03}"),
            lfu_log_factor: 10,
            native: false,
            analyses: [Analysis::Hotkey, Analysis::Bigkey]
                .into_iter()
                .map(|analysis| AnalysisSpec {
                    analysis,
                    top_n: KEYS,
                    mode: "trigger",
                    interval: Duration::from_secs(900),
                })
                .collect(),
        })
        .collect();
    store.configure(&specs);
    for i in 0..INSTANCES {
        for a in [Analysis::Hotkey, Analysis::Bigkey] {
            store.publish(&id(i), a, &task(i, a, 0));
        }
    }
    store
}

fn bench(c: &mut Criterion) {
    let store = fleet();
    let mut text = Vec::new();
    store.read(|s| render_snapshot(s, &RenderOptions::default(), &mut text));
    eprintln!(
        "snapshot: {INSTANCES} instances, {} series, {} bytes",
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count(),
        text.len()
    );

    let mut g = c.benchmark_group("exposition");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(20);
    g.bench_function("render_snapshot (one pass, no cache)", |b| {
        let mut out = Vec::with_capacity(text.len());
        b.iter(|| {
            out.clear();
            store.read(|s| render_snapshot(s, &RenderOptions::default(), &mut out));
        })
    });
    g.bench_function("first scrape (render + compress every result)", |b| {
        b.iter_batched(
            || Exposition::new(store.clone(), RenderOptions::default()).expect("valid"),
            |exp| exp.body(true),
            BatchSize::PerIteration,
        )
    });

    let exp = Exposition::new(store.clone(), RenderOptions::default()).expect("valid");
    exp.body(false);
    g.sample_size(100);
    g.bench_function("scrape unchanged, plain", |b| b.iter(|| exp.body(false)));
    g.bench_function("scrape unchanged, gzip", |b| b.iter(|| exp.body(true)));
    // The text is kept compact: writing the body out expands every piece.
    g.bench_function("scrape unchanged, plain, whole body written out", |b| {
        b.iter(|| exp.body(false).into_bytes())
    });
    g.bench_function("scrape after a state change, gzip", |b| {
        b.iter_batched(
            || store.set_running(&id(7), Analysis::Hotkey, None),
            |()| exp.body(true),
            BatchSize::PerIteration,
        )
    });
    let mut generation = 1;
    g.bench_function("scrape after one new result, gzip", |b| {
        b.iter_batched(
            || {
                generation += 1;
                store.publish(
                    &id(9),
                    Analysis::Hotkey,
                    &task(9, Analysis::Hotkey, generation),
                );
            },
            |()| exp.body(true),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
