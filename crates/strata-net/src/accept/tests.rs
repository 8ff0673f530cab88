use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// EMFILE on Linux: the process is out of file descriptors.
fn out_of_descriptors() -> io::Error {
    io::Error::from_raw_os_error(24)
}

fn pauses(failures: &mut Failures, n: usize, now: Instant) -> Vec<u64> {
    (0..n)
        .map(|_| {
            failures
                .failed(&out_of_descriptors(), now)
                .pause
                .as_millis() as u64
        })
        .collect()
}

#[test]
fn pauses_grow_to_a_second_while_descriptors_run_out_and_reset_after_a_success() {
    let mut f = Failures::default();
    let now = Instant::now();
    assert_eq!(
        pauses(&mut f, 9, now),
        [10, 20, 40, 80, 160, 320, 640, 1000, 1000]
    );
    f.succeeded();
    assert_eq!(pauses(&mut f, 2, now), [10, 20]);
}

#[test]
fn an_error_of_one_connection_does_not_pause() {
    let mut f = Failures::default();
    let now = Instant::now();
    let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
    assert_eq!(f.failed(&aborted, now).pause, Duration::ZERO);
    // nor does it reset a pause that is growing
    pauses(&mut f, 3, now);
    assert_eq!(f.failed(&aborted, now).pause, Duration::ZERO);
    assert_eq!(pauses(&mut f, 1, now), [80]);
}

#[test]
fn at_most_one_line_a_second_saying_how_many_were_suppressed() {
    let mut f = Failures::default();
    let start = Instant::now();
    let logged = |f: &mut Failures, after_ms: u64| {
        f.failed(
            &out_of_descriptors(),
            start + Duration::from_millis(after_ms),
        )
        .log
    };
    assert_eq!(logged(&mut f, 0), Some(0));
    for ms in 1..=999 {
        assert_eq!(logged(&mut f, ms), None);
    }
    assert_eq!(logged(&mut f, 1000), Some(999));
    // a success between failures does not reopen the flood gate
    f.succeeded();
    assert_eq!(logged(&mut f, 1001), None);
    assert_eq!(logged(&mut f, 2500), Some(1));
}

#[tokio::test]
async fn a_connection_over_the_limit_waits_and_shutdown_waits_for_the_open_ones() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let limit = crate::Limit::new(1);
    let served = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            accept_loop("test", listener, &shutdown, limit, |mut s, _, admitted| {
                let sock = socket2::SockRef::from(&s);
                assert!(sock.keepalive().unwrap(), "keepalive on");
                assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(300));
                tokio::spawn(async move {
                    let _admitted = admitted;
                    // says hello, then echoes one byte back once the client sends it
                    let _ = s.write_all(b"hi").await;
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                    }
                });
            })
            .await
            .finished()
            .await
        })
    };
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hello = [0u8; 2];
    first.read_exact(&mut hello).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    // a short wait to show that something does not happen: the second connection is not
    // served while the first holds the only permit
    let early =
        tokio::time::timeout(Duration::from_millis(200), second.read_exact(&mut hello)).await;
    assert!(early.is_err(), "served over the limit");
    first.write_all(b"x").await.unwrap();
    first.read_exact(&mut [0u8; 1]).await.unwrap();
    drop(first);
    second.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hi");

    // shutdown stops accepting but waits for the open connection to finish (again a short wait
    // for something that must not happen)
    shutdown.cancel();
    let mut served = served;
    let early = tokio::time::timeout(Duration::from_millis(200), &mut served).await;
    assert!(early.is_err(), "returned while a connection was open");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    second.write_all(b"y").await.unwrap();
    served.await.unwrap();
}
