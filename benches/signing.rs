//! Micro-benchmarks of SDK-HMAC-SHA256 request signing: the full `sign` the client runs per
//! request, and its canonical request step alone.
//!
//! Run with `cargo bench --bench signing`; see BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion};
use dcs_key_exporter::dcs::signer::{
    canonical_request, default_signed_headers, sign, SignableRequest,
};

fn bench(c: &mut Criterion) {
    let headers: Vec<(String, String)> = [
        ("Content-Type", "application/json"),
        ("Host", "dcs.cn-north-4.myhuaweicloud.com"),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
        ("X-Sdk-Date", "20240101T000000Z"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let list = SignableRequest {
        method: "GET",
        path: "/v2/0123456789abcdef0123456789abcdef/instances/5560df16-cebf-4473-95c4-d1b573c16e79/hotkey-tasks",
        query: "offset=0&limit=100",
        headers: &headers,
        body: b"",
    };
    let create = SignableRequest {
        method: "POST",
        path: "/v2/0123456789abcdef0123456789abcdef/instances/5560df16-cebf-4473-95c4-d1b573c16e79/bigkey-task",
        query: "",
        headers: &headers,
        body: br#"{"scan_type":"manual"}"#,
    };
    let mut g = c.benchmark_group("signing");
    g.bench_function("sign list request (GET with query)", |b| {
        b.iter(|| {
            sign(
                &list,
                "AKTESTEXAMPLE0000000",
                "SKtestExampleSecretKey0000000000000000000",
                "20240101T000000Z",
            )
        })
    });
    g.bench_function("sign create request (POST with body)", |b| {
        b.iter(|| {
            sign(
                &create,
                "AKTESTEXAMPLE0000000",
                "SKtestExampleSecretKey0000000000000000000",
                "20240101T000000Z",
            )
        })
    });
    let signed = default_signed_headers(&headers);
    g.bench_function("canonical request only", |b| {
        b.iter(|| canonical_request(&list, &signed))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
