//! The simulator's routing: a method and a `/v2/{project}/...` path parsed into the DCS
//! operation it names ([`Route`]), and the query string helpers (paging) the operations share.

use percent_encoding::percent_decode_str;

use super::reply::{invalid, Reply};
use crate::dcs::model::{Analysis, Operation};

/// The DCS operations, parsed from method and path.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    ListInstances,
    ShowInstance(String),
    ListTasks(String, Analysis),
    CreateTask(String, Analysis),
    ShowTask(String, Analysis, String),
    DeleteTask(String, Analysis, String),
    ShowAutoscan(String, Analysis),
    UpdateAutoscan(String, Analysis),
    Export(String, String),
    ListOffline(String),
    CreateOffline(String),
    ShowOffline(String, String),
    DeleteOffline(String, String),
    ListBackups(String),
    ShowNodes(String),
    ListGroups(String),
}

impl Route {
    pub(super) fn operation(&self) -> &'static str {
        match self {
            Route::ListInstances => "ListInstances",
            Route::ShowInstance(_) => "ShowInstance",
            Route::ListTasks(_, a) => a.operation(Operation::ListTasks),
            Route::CreateTask(_, a) => a.operation(Operation::CreateTask),
            Route::ShowTask(_, a, _) => a.operation(Operation::ShowTask),
            Route::DeleteTask(_, a, _) => a.operation(Operation::DeleteTask),
            Route::ShowAutoscan(_, a) => a.operation(Operation::ShowAutoscan),
            Route::UpdateAutoscan(_, a) => a.operation(Operation::UpdateAutoscan),
            Route::Export(..) => "DownloadHotKey",
            Route::ListOffline(_) => Analysis::Keyfamily.operation(Operation::ListTasks),
            Route::CreateOffline(_) => Analysis::Keyfamily.operation(Operation::CreateTask),
            Route::ShowOffline(..) => Analysis::Keyfamily.operation(Operation::ShowTask),
            Route::DeleteOffline(..) => Analysis::Keyfamily.operation(Operation::DeleteTask),
            Route::ListBackups(_) => crate::dcs::offline::OP_LIST_BACKUPS,
            Route::ShowNodes(_) => crate::dcs::offline::OP_SHOW_NODES,
            Route::ListGroups(_) => crate::dcs::offline::OP_LIST_GROUPS,
        }
    }

    pub(super) fn instance_id(&self) -> Option<&str> {
        match self {
            Route::ListInstances => None,
            Route::ShowInstance(i)
            | Route::ListTasks(i, _)
            | Route::CreateTask(i, _)
            | Route::ShowTask(i, _, _)
            | Route::DeleteTask(i, _, _)
            | Route::ShowAutoscan(i, _)
            | Route::UpdateAutoscan(i, _)
            | Route::Export(i, _)
            | Route::ListOffline(i)
            | Route::CreateOffline(i)
            | Route::ShowOffline(i, _)
            | Route::DeleteOffline(i, _)
            | Route::ListBackups(i)
            | Route::ShowNodes(i)
            | Route::ListGroups(i) => Some(i),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum RouteError {
    NotFound,
    MethodNotAllowed,
}

/// A parsed `/v2/{project}/instances/...` path.
#[derive(Debug)]
pub(super) struct V2Path {
    pub(super) project: String,
    pub(super) route: Result<Route, RouteError>,
}

pub(super) fn analysis_of(seg: &str, hot: &str, big: &str) -> Option<Analysis> {
    if seg == hot {
        Some(Analysis::Hotkey)
    } else if seg == big {
        Some(Analysis::Bigkey)
    } else {
        None
    }
}

/// Parses a `/v2/...` path; `None` if it is not one.
pub(super) fn parse_v2(method: &str, path: &str) -> Option<V2Path> {
    let rest = path.strip_prefix("/v2/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let project = segs.first().cloned().unwrap_or_default();
    // ListGroupReplicationInfo lives under the singular `instance`.
    if segs.len() == 4 && segs[1] == "instance" && segs[3] == "groups" && !segs[2].is_empty() {
        let route = match method {
            "GET" => Ok(Route::ListGroups(segs[2].clone())),
            _ => Err(RouteError::MethodNotAllowed),
        };
        return Some(V2Path { project, route });
    }
    if segs.len() < 2 || segs[1] != "instances" || segs.iter().any(String::is_empty) {
        return Some(V2Path {
            project,
            route: Err(RouteError::NotFound),
        });
    }
    let s: Vec<&str> = segs[2..].iter().map(String::as_str).collect();
    use Route::*;
    let (route, allowed): (Option<Route>, &[&str]) = match s.as_slice() {
        [] => (Some(ListInstances), &["GET"]),
        [id] => (Some(ShowInstance(id.to_string())), &["GET"]),
        [id, seg] => {
            if let Some(a) = analysis_of(seg, "hotkey-tasks", "bigkey-tasks") {
                (Some(ListTasks(id.to_string(), a)), &["GET"])
            } else if let Some(a) = analysis_of(seg, "hotkey-task", "bigkey-task") {
                (Some(CreateTask(id.to_string(), a)), &["POST"])
            } else if *seg == "backups" {
                (Some(ListBackups(id.to_string())), &["GET"])
            } else if *seg == "logical-nodes" {
                (Some(ShowNodes(id.to_string())), &["GET"])
            } else {
                (None, &[])
            }
        }
        [id, "offline", "key-analysis"] if method == "POST" => {
            (Some(CreateOffline(id.to_string())), &["POST"])
        }
        [id, "offline", "key-analysis"] => (Some(ListOffline(id.to_string())), &["GET", "POST"]),
        [id, seg, tid] => match analysis_of(seg, "hotkey-task", "bigkey-task") {
            Some(a) if method == "DELETE" => (
                Some(DeleteTask(id.to_string(), a, tid.to_string())),
                &["DELETE"],
            ),
            Some(a) => (
                Some(ShowTask(id.to_string(), a, tid.to_string())),
                &["GET", "DELETE"],
            ),
            None => match analysis_of(seg, "hotkey", "bigkey") {
                Some(a) if *tid == "autoscan" && method == "PUT" => {
                    (Some(UpdateAutoscan(id.to_string(), a)), &["PUT"])
                }
                Some(a) if *tid == "autoscan" => {
                    (Some(ShowAutoscan(id.to_string(), a)), &["GET", "PUT"])
                }
                _ => (None, &[]),
            },
        },
        [id, "hotkey", tid, "export"] => (Some(Export(id.to_string(), tid.to_string())), &["POST"]),
        [id, "offline", "key-analysis", tid] if method == "DELETE" => (
            Some(DeleteOffline(id.to_string(), tid.to_string())),
            &["DELETE"],
        ),
        [id, "offline", "key-analysis", tid] => (
            Some(ShowOffline(id.to_string(), tid.to_string())),
            &["GET", "DELETE"],
        ),
        _ => (None, &[]),
    };
    let route = match route {
        None => Err(RouteError::NotFound),
        Some(_) if !allowed.contains(&method) => Err(RouteError::MethodNotAllowed),
        Some(r) => Ok(r),
    };
    Some(V2Path { project, route })
}

/// Decoded query pairs (`%XX` and `+` decoded).
pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `offset` (≥ 0, default 0) and `limit` (1–1000, default 10).
pub(super) fn paging(pairs: &[(String, String)]) -> Result<(usize, usize), Reply> {
    let offset = match query_get(pairs, "offset") {
        None => 0,
        Some(v) => v.trim().parse::<usize>().map_err(|_| invalid("offset"))?,
    };
    let limit = match query_get(pairs, "limit") {
        None => 10,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(l) if (1..=1000).contains(&l) => l,
            _ => return Err(invalid("limit")),
        },
    };
    Ok((offset, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Result<Route, RouteError> {
        parse_v2(method, path).map_or(Err(RouteError::NotFound), |p| p.route)
    }

    #[test]
    fn routes_follow_the_documented_paths() {
        let p = "/v2/p/instances";
        assert_eq!(route("GET", p), Ok(Route::ListInstances));
        assert_eq!(
            route("GET", &format!("{p}/i")),
            Ok(Route::ShowInstance("i".into()))
        );
        assert_eq!(
            route("GET", &format!("{p}/i/hotkey-tasks")),
            Ok(Route::ListTasks("i".into(), Analysis::Hotkey))
        );
        assert_eq!(
            route("POST", &format!("{p}/i/bigkey-task")),
            Ok(Route::CreateTask("i".into(), Analysis::Bigkey))
        );
        assert_eq!(
            route("GET", &format!("{p}/i/bigkey-task/t")),
            Ok(Route::ShowTask("i".into(), Analysis::Bigkey, "t".into()))
        );
        assert_eq!(
            route("DELETE", &format!("{p}/i/hotkey-task/t")),
            Ok(Route::DeleteTask("i".into(), Analysis::Hotkey, "t".into()))
        );
        assert_eq!(
            route("PUT", &format!("{p}/i/hotkey/autoscan")),
            Ok(Route::UpdateAutoscan("i".into(), Analysis::Hotkey))
        );
        assert_eq!(
            route("GET", &format!("{p}/i/bigkey/autoscan")),
            Ok(Route::ShowAutoscan("i".into(), Analysis::Bigkey))
        );
        assert_eq!(
            route("POST", &format!("{p}/i/hotkey/t/export")),
            Ok(Route::Export("i".into(), "t".into()))
        );
        assert_eq!(
            route("POST", &format!("{p}/i/hotkey-tasks")),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", &format!("{p}/i/hotkey-task")),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", &format!("{p}/i/nothing")),
            Err(RouteError::NotFound)
        );
        assert_eq!(route("GET", "/v2/p/clusters"), Err(RouteError::NotFound));
        assert!(parse_v2("GET", "/v3/x").is_none());
    }

    #[test]
    fn paging_defaults_and_limits() {
        let q = |s: &str| paging(&query_pairs(s)).map_err(|r| r.status);
        assert_eq!(q(""), Ok((0, 10)));
        assert_eq!(q("offset=5&limit=1000"), Ok((5, 1000)));
        assert_eq!(q("limit=0"), Err(400));
        assert_eq!(q("limit=1001"), Err(400));
        assert_eq!(q("offset=-1"), Err(400));
        assert_eq!(q("limit=abc"), Err(400));
    }
}
