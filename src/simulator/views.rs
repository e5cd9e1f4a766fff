//! The JSON views of simulated instances: ListInstances (with its filters and paging) and
//! ShowInstance, in the shapes the real service answers with.

use serde_json::{json, Value};

use super::reply::Reply;
use super::routes::{paging, query_get};
use super::state::InstanceState;
use super::World;
use crate::dcs::model::{InstanceInfo, InstanceList, Tag};
use crate::dcs::timestamp;

pub(super) fn list_instances(
    w: &mut World,
    pairs: &[(String, String)],
    now: time::OffsetDateTime,
    scale: f64,
) -> Reply {
    let (offset, limit) = match paging(pairs) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let exact_name = query_get(pairs, "name_equal") == Some("true");
    let include_failure = query_get(pairs, "include_failure") != Some("false");
    let wanted_tags: Vec<(String, String)> = query_get(pairs, "tags")
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (t.trim().to_owned(), String::new()),
        })
        .collect();
    let mut matching = Vec::new();
    for i in 0..w.instances.len() {
        w.touch(i, now, scale);
        let inst = &w.instances[i];
        let info = &inst.info;
        let keep = query_get(pairs, "instance_id").is_none_or(|v| v.is_empty() || v == info.id)
            && query_get(pairs, "name").is_none_or(|v| {
                v.is_empty()
                    || if exact_name {
                        info.name == v
                    } else {
                        info.name.contains(v)
                    }
            })
            && query_get(pairs, "status").is_none_or(|v| v.is_empty() || info.status == v)
            && (include_failure || info.status != "CREATEFAILED")
            && query_get(pairs, "ip")
                .is_none_or(|v| v.is_empty() || instance_ips(inst).join(",").contains(v))
            && wanted_tags.iter().all(|(k, v)| {
                info.tags
                    .iter()
                    .any(|(tk, tv)| tk == k && (v.is_empty() || tv == v))
            });
        if keep {
            matching.push(i);
        }
    }
    let instances: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&i| instance_json(&w.instances[i], false))
        .collect();
    let body = InstanceList {
        instance_num: Some(matching.len() as i64),
        instances: Vec::new(),
    };
    let mut v = serde_json::to_value(&body).unwrap_or_else(|_| json!({}));
    v["instances"] = Value::Array(instances);
    Reply::json(200, &v)
}

/// The node addresses of an instance: one per shard on clusters (matching the `shard` field of
/// its keys), one otherwise.
pub(super) fn instance_ips(inst: &InstanceState) -> Vec<String> {
    let octet = (super::keyspace::stable_hash(&inst.info.id) % 200) as u8 + 20;
    if inst.info.cache_mode == "cluster" {
        // Cluster keys report their own shard addresses; the instance lists its entry nodes.
        (0..inst.info.shards.max(1))
            .map(|s| format!("192.168.{octet}.{}", 10 + s))
            .collect()
    } else {
        vec![format!("192.168.{octet}.10")]
    }
}

/// An instance as `ListInstances` (`detailed = false`) or `ShowInstance` shows it: the fields of
/// [`InstanceInfo`] plus the other fields of the SDK types, with the SDK's JSON types.
pub(super) fn instance_json(inst: &InstanceState, detailed: bool) -> Value {
    let info = &inst.info;
    let capacity_gb = info.capacity_mb / 1024;
    let used_mb = ((info.key_count as f64 * 180.0) / (1024.0 * 1024.0)).round() as i64 + 2;
    let used_mb = used_mb.min((info.capacity_mb as f64 * 0.92) as i64);
    let model = InstanceInfo {
        instance_id: info.id.clone(),
        name: info.name.clone(),
        engine: Some(info.engine.clone()),
        engine_version: Some(info.engine_version.clone()),
        status: Some(info.status.clone()),
        spec_code: Some(info.spec_code.clone()),
        cache_mode: Some(info.cache_mode.clone()),
        capacity: Some(capacity_gb as i64),
        max_memory: Some((info.capacity_mb as f64 * 0.8) as i64),
        used_memory: Some(used_mb),
        sharding_count: Some(if info.cache_mode == "cluster" {
            i64::from(info.shards.max(1))
        } else {
            1
        }),
        tags: info
            .tags
            .iter()
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    };
    let mut v = serde_json::to_value(&model).unwrap_or_else(|_| json!({}));
    let created = timestamp::format(info.created_at);
    let capacity_minor = if info.capacity_mb < 1024 {
        format!(".{:03}", info.capacity_mb * 1000 / 1024)
            .trim_end_matches('0')
            .to_owned()
    } else {
        String::new()
    };
    let short = info.id.split('-').next().unwrap_or(&info.id).to_owned();
    let domain = format!("redis-{short}.dcs.huaweicloud.com");
    let extras = json!({
        "capacity_minor": capacity_minor,
        "ip": instance_ips(inst).join(","),
        "port": 6379,
        "domain_name": domain,
        "readonly_domain_name": if info.cache_mode == "ha" { format!("readonly-{domain}") } else { String::new() },
        "charging_mode": 0,
        "created_at": created,
        "az_codes": ["cn-north-4a", "cn-north-4b"],
        "enterprise_project_id": "0",
        "description": "",
        "cpu_type": "x86_64",
        "sub_status": "",
        "features": {"support_acl": true, "support_transparent_client_ip": true,
                     "support_ssl": info.engine_version.as_str() >= "6.0", "support_audit_log": false},
        "enable_ssl": false,
        "service_upgrade": false,
        "enable_publicip": false,
        "no_password_access": "false",
        "access_user": "",
        "vpc_id": "2b8c6a4e-1f3d-4c5b-9a7e-0d1c2b3a4f5e",
        "vpc_name": "vpc-default",
        "subnet_id": "7d6c5b4a-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
        "security_group_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "maintain_begin": "18:00:00",
        "maintain_end": "22:00:00",
        "user_id": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
        "user_name": "simulator-user",
        "order_id": "",
        "publicip_id": "",
        "publicip_address": "",
        "service_task_id": "",
    });
    if let (Some(obj), Value::Object(ex)) = (v.as_object_mut(), extras) {
        obj.extend(ex);
        if detailed {
            let more = json!({
                "update_at": created,
                "available_zones": ["ae04cf9d61544df3806a3feeb401b204"],
                "db_number": if info.cache_mode == "cluster" { 1 } else { 256 },
                "replica_count": if info.cache_mode == "single" { 1 } else { 2 },
                "product_type": "generic",
                "storage_type": "DRAM",
                "launched_at": created,
                "enterprise_project_name": "default",
                "transparent_client_ip_enable": false,
                "support_slow_log_flag": "true",
                "subnet_name": "subnet-default",
                "subnet_cidr": "192.168.0.0/16",
                "security_group_name": "default",
                "backend_addrs": "",
                "cloud_service_type_code": "hws.service.type.dcs",
                "cloud_resource_type_code": "hws.resource.type.dcs3",
                "inquery_spec_code": info.spec_code,
            });
            if let Value::Object(m) = more {
                obj.extend(m);
            }
        } else {
            obj.remove("cache_mode");
            obj.remove("sharding_count");
            obj.insert("updated_at".into(), Value::String(created));
        }
    }
    v
}
