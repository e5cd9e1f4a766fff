//! Calls every DCS API operation the client knows once, for every analysis, and prints one line
//! per call: `<operation> ok`, `<operation> HTTP <status> <code>` or `<operation> error: ...`.
//!
//! ```text
//! cargo run --example every_call -- <endpoint> <project_id> <ak> <sk> <instance_id> [security_token]
//! ```
//!
//! Exits 1 when any call was answered 401 (the credentials or the signature were refused), 2 on
//! bad arguments. Used by `tests/sdk/verify_client_signatures.py` to check the client's
//! signatures against the official SDK's signer.

use std::process::ExitCode;
use std::time::Duration;

use dcs_key_exporter::dcs::{
    offline, Analysis, Auth, AutoscanConfigRequest, BackupListQuery, ClientConfig, DcsApi,
    DcsClient, Error, InstanceListQuery, OfflineAnalysisRequest, TaskListQuery, TaskStatus,
};
use dcs_key_exporter::secret::Secret;

/// Prints the line for one call; returns whether it was a 401.
fn report<T>(operation: &str, result: &Result<T, Error>) -> bool {
    match result {
        Ok(_) => println!("{operation} ok"),
        Err(e @ Error::Api { status, code, .. }) => {
            println!(
                "{operation} HTTP {status} {}",
                code.as_deref().unwrap_or("-")
            );
            eprintln!("  {e}");
        }
        Err(e) => println!("{operation} error: {e}"),
    }
    matches!(result, Err(e) if e.status() == Some(401))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(5..=6).contains(&args.len()) {
        eprintln!(
            "usage: every_call <endpoint> <project_id> <ak> <sk> <instance_id> [security_token]"
        );
        return ExitCode::from(2);
    }
    let endpoint = match url::Url::parse(&args[0]) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("bad endpoint {:?}: {e}", args[0]);
            return ExitCode::from(2);
        }
    };
    let auth = Auth::AkSk {
        access_key: args[2].clone(),
        secret_key: Secret::new(args[3].as_str()),
        security_token: args.get(5).map(|t| Secret::new(t.as_str())),
    };
    let mut config = ClientConfig::new(endpoint, args[1].as_str(), auth);
    config.request_timeout = Duration::from_secs(10);
    config.max_retries = 0;
    let client = match DcsClient::new(config, None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let instance = args[4].as_str();
    let mut unauthorised = false;

    for analysis in Analysis::ALL {
        use dcs_key_exporter::dcs::Operation as Op;
        let created = client.create_task(instance, analysis).await;
        unauthorised |= report(analysis.operation(Op::CreateTask), &created);
        let task_id = created
            .map(|t| t.id)
            .unwrap_or_else(|_| "no-such-task".to_owned());

        let query = TaskListQuery {
            offset: Some(0),
            limit: Some(10),
            status: Some(TaskStatus::Success),
        };
        let r = client.list_tasks(instance, analysis, &query).await;
        unauthorised |= report(analysis.operation(Op::ListTasks), &r);

        let r = client.show_task(instance, analysis, &task_id).await;
        unauthorised |= report(analysis.operation(Op::ShowTask), &r);

        let r = client.show_autoscan(instance, analysis).await;
        unauthorised |= report(analysis.operation(Op::ShowAutoscan), &r);

        let update = AutoscanConfigRequest {
            enable_auto_scan: true,
            schedule_at: vec!["21:00".into(), "09:30".into()],
        };
        let r = client.update_autoscan(instance, analysis, &update).await;
        unauthorised |= report(analysis.operation(Op::UpdateAutoscan), &r);

        let r = client.delete_task(instance, analysis, &task_id).await;
        unauthorised |= report(analysis.operation(Op::DeleteTask), &r);
    }

    let r = client.show_instance(instance).await;
    unauthorised |= report("ShowInstance", &r);

    // A name with a space and a slash exercises the query encoding.
    let query = InstanceListQuery {
        offset: Some(0),
        limit: Some(10),
        status: Some("RUNNING".into()),
        name: Some("dcs a/b".into()),
        instance_id: None,
    };
    let r = client.list_instances(&query).await;
    unauthorised |= report("ListInstances", &r);

    // The offline key analysis (key families) and the listings that choose its inputs.
    let backups = BackupListQuery {
        offset: Some(0),
        limit: Some(100),
        begin_time: Some("20240101000000".into()),
        end_time: None,
    };
    let r = client.list_backups(instance, &backups).await;
    unauthorised |= report(offline::OP_LIST_BACKUPS, &r);
    let r = client.list_nodes(instance).await;
    unauthorised |= report(offline::OP_SHOW_NODES, &r);
    let r = client.list_groups(instance).await;
    unauthorised |= report(offline::OP_LIST_GROUPS, &r);
    {
        use dcs_key_exporter::dcs::Operation as Op;
        let kf = Analysis::Keyfamily;
        let request = OfflineAnalysisRequest {
            node_id: "node-1".into(),
            backup_id: Some("backup-1".into()),
        };
        let created = client.create_offline_task(instance, &request).await;
        unauthorised |= report(kf.operation(Op::CreateTask), &created);
        let task_id = created
            .map(|t| t.task_id)
            .unwrap_or_else(|_| "no-such-task".to_owned());
        let query = TaskListQuery {
            offset: Some(0),
            limit: Some(10),
            status: None,
        };
        let r = client.list_offline_tasks(instance, &query).await;
        unauthorised |= report(kf.operation(Op::ListTasks), &r);
        let r = client.show_offline_task(instance, &task_id).await;
        unauthorised |= report(kf.operation(Op::ShowTask), &r);
        let r = client.delete_offline_task(instance, &task_id).await;
        unauthorised |= report(kf.operation(Op::DeleteTask), &r);
    }

    if unauthorised {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
