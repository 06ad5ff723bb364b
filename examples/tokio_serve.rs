//! A tokio program serving what another process produces: a forked child
//! fills two shmkit queues (numbers and words), and a tokio task receives
//! from both with `recv_async` (no thread per queue) and writes each
//! value as a line to a TCP client on 127.0.0.1 (an ephemeral port). The
//! client, another task of this program, prints what it got.
//!
//! `cargo run --release --features tokio --example tokio_serve`

use shmkit::queue::GetError;
use shmkit::Queue;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::init();
    let numbers = Queue::<u64>::anonymous(16, 4)?;
    let words = Queue::<String>::anonymous(64, 4)?;

    // Fork before the runtime starts its threads.
    let producer = shmkit::fork(|| {
        for n in 1..=5u64 {
            numbers.send(n * n).unwrap();
        }
        for w in ["alpha", "beta", "gamma"] {
            words.send(w.to_string()).unwrap();
        }
        // Receivers drain what is queued, then see the end.
        numbers.close();
        words.close();
    })?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()?;
    let got = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            let mut lines = BufReader::new(stream).lines();
            let mut got = Vec::new();
            while let Some(line) = lines.next_line().await? {
                got.push(line);
            }
            Ok::<_, std::io::Error>(got)
        });

        let (mut socket, _) = listener.accept().await?;
        let (mut numbers_open, mut words_open) = (true, true);
        while numbers_open || words_open {
            // Both futures are cancel-safe: the one not chosen has taken
            // nothing from its queue.
            let line = tokio::select! {
                r = numbers.recv_async(), if numbers_open => match r {
                    Ok(n) => format!("number {n}"),
                    Err(GetError::Disconnected) => { numbers_open = false; continue; }
                    Err(e) => return Err(e.into()),
                },
                r = words.recv_async(), if words_open => match r {
                    Ok(w) => format!("word {w}"),
                    Err(GetError::Disconnected) => { words_open = false; continue; }
                    Err(e) => return Err(e.into()),
                },
            };
            socket.write_all(format!("{line}\n").as_bytes()).await?;
        }
        socket.shutdown().await?;
        drop(socket);
        let status = producer.join_async().await?;
        let got = client.await??;
        Ok::<_, Box<dyn std::error::Error>>((got, status))
    });
    let (got, status) = got?;
    for line in got {
        println!("client got: {line}");
    }
    println!("producer exit code: {}", status.exitcode());
    Ok(())
}
