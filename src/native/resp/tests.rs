//! The client against fake servers on loopback that answer, lie, flood and stall.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::codec::{decode, measure, Measure};
use super::permits::Permits;
use super::*;

/// What a fake server answers to one command (its arguments), as raw bytes.
type Answer = Arc<dyn Fn(&[Vec<u8>]) -> Vec<u8> + Send + Sync>;

/// A fake server answering each command with `answer`; answers what a Redis server does
/// to the commands a connection sends on its own (`PING n`, `SELECT`, `CLIENT NO-TOUCH`) unless
/// `answer` says otherwise (an empty answer).
async fn fake(answer: Answer) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s, answer.clone()));
        }
    });
    port
}

async fn serve(mut s: TcpStream, answer: Answer) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Measure::Complete(n)) = measure(&buf, Limits::list(1000, 1 << 20, 1)) {
            let Ok(Value::Array(args)) = decode(&buf[..n]) else {
                return;
            };
            buf.drain(..n);
            let args: Vec<Vec<u8>> = args
                .into_iter()
                .map(|a| a.as_bytes().unwrap_or_default().to_vec())
                .collect();
            let mut out = answer(&args);
            if out.is_empty() {
                out = default_answer(&args);
            }
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}

fn default_answer(args: &[Vec<u8>]) -> Vec<u8> {
    match args[0].to_ascii_uppercase().as_slice() {
        b"PING" if args.len() > 1 => bulk(&args[1]),
        b"PING" => b"+PONG\r\n".to_vec(),
        _ => b"+OK\r\n".to_vec(),
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        tls: None,
        username: None,
        password: None,
    }
}

async fn open(port: u16) -> Result<Connection, ConnError> {
    connect(
        &endpoint(port),
        Setup {
            no_touch: true,
            readonly: false,
        },
        &Permits::new(16),
    )
    .await
}

fn strlen(key: &str) -> Cmd {
    Cmd::new("STRLEN")
        .arg(key)
        .expect(Expect::Int, Limits::SMALL)
}

#[tokio::test]
async fn batches_are_answered_in_order_with_select_only_when_the_database_changes() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    let port = fake(Arc::new(move |args| {
        seen.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&args.join(&b' ')).into_owned());
        match args[0].as_slice() {
            b"STRLEN" => format!(":{}\r\n", args[1].len()).into_bytes(),
            b"TYPE" => {
                b"-NOPERM this user has no permissions to run the 'type' command\r\n".to_vec()
            }
            _ => Vec::new(),
        }
    }))
    .await;
    let c = open(port).await.unwrap();
    assert_eq!(c.no_touch(), NoTouch::On);
    let (first, second) = ([strlen("a"), strlen("bb")], [strlen("ccc")]);
    let (a, b) = tokio::join!(c.run(Some(3), &first), c.run(Some(3), &second));
    assert_eq!(a.unwrap(), vec![Value::Int(1), Value::Int(2)]);
    assert_eq!(b.unwrap(), vec![Value::Int(3)]);
    // A per-command error is that command's answer, not a failure.
    let v = c
        .one(
            Some(0),
            Cmd::new("TYPE")
                .arg("k")
                .expect(Expect::Text, Limits::SMALL),
        )
        .await
        .unwrap();
    assert_eq!(v.as_error().unwrap().code(), "NOPERM");
    let sent = log.lock().unwrap().clone();
    assert_eq!(
        sent,
        [
            "CLIENT NO-TOUCH ON",
            "SELECT 3",
            "STRLEN a",
            "STRLEN bb",
            "PING 1",
            "STRLEN ccc",
            "PING 2",
            "SELECT 0",
            "TYPE k",
            "PING 3"
        ]
    );
}

#[tokio::test]
async fn an_oversized_reply_fails_the_connection_without_buffering_it() {
    // A bulk announced as a terabyte, then bytes as fast as the socket takes them.
    let port = fake(Arc::new(|args| match args[0].as_slice() {
        b"INFO" => {
            let mut v = b"$999999999999\r\n".to_vec();
            v.extend(std::iter::repeat_n(b'x', 4 << 20));
            v
        }
        b"SCAN" => {
            let mut v = b"*2\r\n$1\r\n0\r\n*2000000000\r\n".to_vec();
            for _ in 0..10_000 {
                v.extend_from_slice(b"$3\r\nkey\r\n");
            }
            v
        }
        _ => Vec::new(),
    }))
    .await;
    let c = open(port).await.unwrap();
    let e = c
        .one(
            None,
            Cmd::new("INFO").expect(Expect::Text, Limits::text(8 << 20)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ConnError::TooLarge(m) if m.contains("999999999999")),
        "{e}"
    );
    assert!(c.is_closed());
    let c = open(port).await.unwrap();
    let e = c
        .one(
            Some(0),
            Cmd::new("SCAN")
                .arg("0")
                .expect(Expect::Scan, Limits::list(10_000, 1 << 20, 2)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ConnError::TooLarge(_)), "{e}");
}

#[tokio::test]
async fn a_server_that_answers_twice_is_caught_before_its_answers_are_used() {
    // Every answer sent twice: the answers of a batch are shifted by one.
    let port = fake(Arc::new(|args| {
        let one = match args[0].as_slice() {
            b"STRLEN" => format!(":{}\r\n", args[1].len()).into_bytes(),
            _ => default_answer(args),
        };
        [one.clone(), one].concat()
    }))
    .await;
    let mut ep = endpoint(port);
    ep.password = None;
    let c = connect(&ep, Setup::default(), &Permits::new(4)).await;
    // PING answered twice: the first batch sees the extra answer.
    let c = c.unwrap();
    let e = c
        .run(Some(0), &[strlen("k:999"), strlen("k:99")])
        .await
        .unwrap_err();
    assert!(matches!(&e, ConnError::Protocol(_)), "{e}");
}

#[tokio::test]
async fn answers_of_the_wrong_shape_and_unasked_answers_fail_the_connection() {
    let port = fake(Arc::new(|args| match args[0].as_slice() {
        b"INFO" => b":42\r\n".to_vec(),
        b"SCAN" => b"*2\r\n$1\r\n0\r\n*-1\r\n".to_vec(),
        _ => Vec::new(),
    }))
    .await;
    let c = open(port).await.unwrap();
    let e = c
        .one(
            None,
            Cmd::new("INFO").expect(Expect::Text, Limits::text(1 << 20)),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("an integer answered to INFO"), "{e}");
    let c = open(port).await.unwrap();
    let e = c
        .one(
            Some(0),
            Cmd::new("SCAN")
                .arg("0")
                .expect(Expect::Scan, Limits::list(100, 1024, 2)),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("answered to SCAN"), "{e}");

    // Bytes nobody asked for.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 256];
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0);
        s.write_all(b"+OK\r\n+OK\r\n").await.unwrap();
        std::future::pending::<()>().await;
    });
    let c = open(port).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if c.is_closed() {
                break c.run(None, &[strlen("x")]).await.unwrap_err();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(e.to_string().contains("to no command"), "{e}");
}

#[tokio::test]
async fn a_tls_server_on_a_redis_url_is_named_as_such() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b).await;
        // A TLS alert record (what a TLS port answers to plain text).
        let _ = s
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])
            .await;
    });
    let e = open(port).await.unwrap_err();
    assert!(e.to_string().contains("seems to speak TLS"), "{e}");
}

#[tokio::test]
async fn refused_credentials_and_setup_are_auth_errors() {
    let port = fake(Arc::new(|args| match args[0].as_slice() {
        b"AUTH" => b"-WRONGPASS invalid username-password pair or user is disabled.\r\n".to_vec(),
        _ => Vec::new(),
    }))
    .await;
    let mut ep = endpoint(port);
    ep.password = Some(crate::secret::Secret::new("hunter2"));
    let e = connect(&ep, Setup::default(), &Permits::new(4))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ConnError::Auth(m) if m.contains("WRONGPASS")),
        "{e}"
    );
    assert!(!e.to_string().contains("hunter2"));
    assert!(!format!("{ep:?}").contains("hunter2"));

    let port = fake(Arc::new(|args| match args[0].as_slice() {
        b"CLIENT" => {
            b"-NOPERM User exporter has no permissions to run the 'client|no-touch' command\r\n"
                .to_vec()
        }
        b"SELECT" => {
            b"-NOPERM User exporter has no permissions to run the 'select' command\r\n".to_vec()
        }
        _ => Vec::new(),
    }))
    .await;
    let c = open(port).await.unwrap();
    assert_eq!(c.no_touch(), NoTouch::Refused);
    let e = c.run(Some(2), &[strlen("k")]).await.unwrap_err();
    assert!(
        matches!(&e, ConnError::Auth(m) if m.contains("SELECT refused")),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (hold_tx, hold) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b).await;
        s.write_all(b"+OK\r\n").await.unwrap();
        let _ = hold.await;
    });
    let c = open(port).await.unwrap();
    let e = c.run(Some(0), &[strlen("k")]).await.unwrap_err();
    assert_eq!(e, ConnError::Timeout(connection::RESPONSE_TIMEOUT));
    drop(hold_tx);
}
