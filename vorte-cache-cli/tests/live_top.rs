//! `vorte-cache top` on a real terminal: tmux runs it in a 120x40 pane, the test reads the screen
//! (`capture-pane`), presses a key (`send-keys`), and checks that it exits 0 with the terminal put
//! back (`docs/cli.md#top`).
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

mod live_support;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use vorte_cache_tests::Stack;

use live_support::{command, service_after_known_traffic};
use support::{Setup, binary, first_layer};

on_cli_stacks!(top_shows_each_layer_of_the_stack_and_what_it_holds);

/// On each of the five stacks, without `--url`: this process's block names every layer with its
/// backend, the layer below L1 answers the probe and holds the keys a writer put there (where the
/// backend can list them: memcached cannot), and `q` quits with exit 0 and the terminal restored.
async fn top_shows_each_layer_of_the_stack_and_what_it_holds(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    for i in 0..3u8 {
        writer.set(&format!("k{i}"), &i).await.expect("set");
    }
    let below = first_layer(stack);
    let backend = writer
        .stats()
        .layers
        .iter()
        .find(|l| l.layer.to_string() == below)
        .map(|l| l.backend)
        .expect("the stack's layer below L1");
    let lists = stack.lists_keys();
    let screen = tokio::task::spawn_blocking(move || {
        let tmux = Tmux::new(&format!("{stack:?}"));
        start_top(&tmux, &setup, &[]);
        let screen = tmux.wait_for("this process's layers", |s| {
            row(s, "this process", below).is_some_and(|r| {
                r.get(1).map(String::as_str) == Some(backend)
                    && r.iter().any(|c| c == "ok")
                    && (!lists || r.get(2).map(String::as_str) == Some("3"))
            })
        });
        quit_top(&tmux, "q");
        screen
    })
    .await
    .expect("tmux session");
    let l1 = row(&screen, "this process", "l1").expect("this process's l1 row");
    assert_eq!(l1[..3], ["l1", "memory", "0"], "{screen}");
}

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("vorte-top-{}-{name}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        // CI may run without a terminal type (or a dumb one); the pane's is tmux's own anyway.
        let term = std::env::var("TERM")
            .ok()
            .filter(|t| !t.is_empty() && t != "dumb")
            .unwrap_or_else(|| "xterm-256color".to_owned());
        let output = Command::new("tmux")
            .env("TERM", term)
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (apt package tmux)");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `shell` in a fresh 120x40 pane named `top`.
    fn pane(&self, shell: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            "top",
            shell,
        ]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Waits until the screen satisfies `done`, at most 20 s; the last screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The cells of the first row of the block titled `title` whose first cell is `layer`.
fn row(screen: &str, title: &str, layer: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .skip_while(|l| !l.contains(title))
        .skip(1)
        .map(|l| l.replace(['│', '┌', '┐', '└', '┘', '─'], " "))
        .find(|l| l.split_whitespace().next() == Some(layer))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

/// `hit rate 75.0 % (3 of 4 reads)`: the rate since the service started, as the title shows it,
/// computed from the service's own stats.
fn since_start(service: &vorte_cache::Cache) -> String {
    let stats = service.stats();
    let hits = stats.l1_hits + stats.l2_hits + stats.l3_hits + stats.l4_hits;
    format!(
        "hit rate {:.1} % ({hits} of {} reads)",
        stats.hit_rate() * 100.0,
        hits + stats.misses
    )
}

/// Starts `top --url URL...` (this process's block alone without one) in a fresh 120x40 pane
/// named `top`.
fn start_top(tmux: &Tmux, setup: &Setup, urls: &[&str]) {
    start_top_with(tmux, &command(setup), urls);
}

/// Starts `command top --url URL...` in a fresh 120x40 pane named `top`; the pane stays after it
/// exits, with `top exited CODE`.
fn start_top_with(tmux: &Tmux, command: &Command, urls: &[&str]) {
    let program = command.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let urls: String = urls.iter().map(|u| format!(" --url {u}")).collect();
    let shell = format!(
        "env -u VORTE_CACHE_CONFIG {program} {} top{urls} --usage-every 1; echo \"top exited $?\"; sleep 60",
        args.join(" "),
    );
    tmux.pane(&shell);
}

/// Presses `key`, and checks that `top` exits 0 with the terminal put back.
fn quit_top(tmux: &Tmux, key: &str) {
    tmux.run(&["send-keys", "-t", "top", key]);
    let after = tmux.wait_for("exit", |s| s.contains("top exited"));
    assert!(after.contains("top exited 0"), "{after}");
    // Off the alternate screen, the cursor shown, the view gone.
    let state = tmux.run(&[
        "display-message",
        "-p",
        "-t",
        "top",
        "#{alternate_on} #{cursor_flag}",
    ]);
    assert_eq!(state.trim(), "0 1");
    assert!(!after.contains("vorte-cache top"), "{after}");
    tmux.run(&["kill-session", "-t", "top"]);
}

/// Starts `top`, waits for the screen `wanted`, quits with `key`; the screen before quitting.
fn top_session(
    tmux: &Tmux,
    setup: &Setup,
    url: &str,
    key: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> String {
    start_top(tmux, setup, &[url]);
    let screen = tmux.wait_for("figures", wanted);
    quit_top(tmux, key);
    screen
}

/// The screen shows the service's hit rate that the test's traffic caused, its layers, this
/// process's layers with the keys the test wrote; `q`, Ctrl-C and Esc each quit with exit 0 and the
/// terminal restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_services_hit_rate_and_the_keys_held_and_quits_cleanly() {
    let setup = Setup::new(Stack::L1Redis, "");
    let (writer, service, url) = service_after_known_traffic(&setup).await;
    writer.set("k1", &1u8).await.expect("set");
    writer.set("k2", &2u8).await.expect("set");
    let headline = since_start(&service);
    assert_eq!(headline, "hit rate 75.0 % (3 of 4 reads)");
    let shown_url = url.clone();
    let screen = tokio::task::spawn_blocking(move || {
        let tmux = Tmux::new("q");
        let wanted = |s: &str| {
            s.contains(&headline)
                && row(s, "this process", "l2")
                    .is_some_and(|r| r.get(2).map(String::as_str) == Some("3"))
        };
        let screen = top_session(&tmux, &setup, &shown_url, "q", &wanted);
        // Ctrl-C (raw mode turns it into a key) and Esc quit too.
        for key in ["C-c", "Escape"] {
            let tmux = Tmux::new(key);
            top_session(&tmux, &setup, &shown_url, key, &wanted);
        }
        screen
    })
    .await
    .expect("tmux sessions");
    println!("{screen}");
    assert!(
        screen.contains(&format!("{url}: hit rate 75.0 % (3 of 4 reads)")),
        "{screen}"
    );
    // The service's layers: L1 answered 2 of its 4 reads, L2 1 of 2.
    let l1 = row(&screen, &url, "l1").expect("the service's l1 row");
    assert_eq!(l1[..5], ["l1", "memory", "50.0", "%", "2"], "{screen}");
    let l2 = row(&screen, &url, "l2").expect("the service's l2 row");
    assert_eq!(l2[..5], ["l2", "redis", "50.0", "%", "1"], "{screen}");
    // This process: L1 empty, L2 holds the three keys written, and answers the probe.
    let own_l1 = row(&screen, "this process", "l1").expect("this process's l1 row");
    assert_eq!(own_l1[..3], ["l1", "memory", "0"], "{screen}");
    let own_l2 = row(&screen, "this process", "l2").expect("this process's l2 row");
    assert_eq!(own_l2[..3], ["l2", "redis", "3"], "{screen}");
    assert!(own_l2.contains(&"ok".to_owned()), "{screen}");
    assert!(screen.contains("bus: lag"), "{screen}");
}

/// Beside the rate since the service started, the title shows the last interval's: no reads while
/// nothing happens, then the reads the test makes (two L1 hits and a miss) in the interval they
/// fall in; with two URLs, their sum too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_last_intervals_hit_rate() {
    let setup = Setup::new(Stack::L1Redis, "");
    let (_writer, service, url) = service_after_known_traffic(&setup).await;
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let tmux = Tmux::new("interval");
        // The same service twice: `all services` sums them.
        start_top(&tmux, &setup, &[&url, &url]);
        // Three reads in a row fall in one interval but for a refresh between two of them
        // (rare): then the interval shows fewer, and the test reads again.
        let mut caught = None;
        for _ in 0..3 {
            tmux.wait_for("an idle interval", |s| s.contains("no reads"));
            runtime.block_on(async {
                for key in ["known", "known", "missing"] {
                    service.get::<u32>(key).await.expect("get");
                }
            });
            let screen = tmux.wait_for("the interval's reads", |s| s.contains("% of "));
            if screen.contains("of 3 reads") {
                caught = Some(screen);
                break;
            }
        }
        let screen = caught.expect("one interval with the three reads");
        let since_start = format!("{}; last ", since_start(&service));
        let title = screen
            .lines()
            .find(|l| l.contains(&url))
            .expect("the service's title");
        assert!(title.contains(&since_start), "{title}");
        assert!(title.contains(" s: 66.7 % of 3 reads"), "{title}");
        let total = screen
            .lines()
            .find(|l| l.contains("all services: "))
            .expect("the sum's title");
        assert!(total.contains(" s: 66.7 % of 6 reads"), "{total}");
        println!("{screen}");
        quit_top(&tmux, "q");
    })
    .await
    .expect("tmux session");
}

/// With `--url` and no configuration at all, the services alone: the service's block, none of
/// this process, and `q` quits with exit 0 and the terminal restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_with_urls_and_no_configuration_shows_the_services_alone() {
    let setup = Setup::new(Stack::L1Redis, "");
    let (_writer, service, url) = service_after_known_traffic(&setup).await;
    let headline = format!("{url}: {}", since_start(&service));
    let screen = tokio::task::spawn_blocking(move || {
        let tmux = Tmux::new("alone");
        // No `--config`; the pane's shell drops `VORTE_CACHE_CONFIG`.
        start_top_with(&tmux, &Command::new(binary()), &[&url]);
        let screen = tmux.wait_for("the service's block", |s| {
            s.contains(&headline) || s.contains("top exited")
        });
        quit_top(&tmux, "q");
        (screen, headline)
    })
    .await
    .expect("tmux session");
    let (screen, headline) = screen;
    println!("{screen}");
    assert!(screen.contains(&headline), "{screen}");
    assert!(!screen.contains("this process"), "{screen}");
}

/// An error ends `top` with the terminal put back too: its output is a pipe whose reader goes
/// away after the first byte (`| head -c 1`), so a redraw fails ("cannot draw", exit 5); raw
/// mode, which `top` set on the pane's terminal (its input), is off again after it, as `stty`
/// says. (The alternate screen and the cursor went down the pipe, not to the pane.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_puts_the_terminal_back_when_it_ends_on_an_error() {
    let setup = Setup::new(Stack::L1Redis, "");
    tokio::task::spawn_blocking(move || {
        let tmux = Tmux::new("error");
        let command = command(&setup);
        let mut line = vec![command.get_program().to_string_lossy().into_owned()];
        line.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
        let stderr = setup.path("top.stderr");
        let script = setup.path("top.sh");
        std::fs::write(
            &script,
            format!(
                "env -u VORTE_CACHE_CONFIG {} top --usage-every 1 2>{} | head -c 1 >/dev/null\n\
                 echo \"top exited ${{PIPESTATUS[0]}}\"\n\
                 stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo' | sed 's/^/mode /'\n\
                 sleep 60\n",
                line.join(" "),
                stderr.display()
            ),
        )
        .expect("script written");
        let shell = format!("bash {}", script.display());
        tmux.pane(&shell);
        let screen = tmux.wait_for("the modes after top", |s| s.contains("mode echo") || s.contains("mode -echo"));
        println!("{screen}");
        let stderr = std::fs::read_to_string(&stderr).expect("top's stderr");
        assert!(screen.contains("top exited 5"), "{screen}\n{stderr}");
        assert!(stderr.contains("cannot draw"), "{stderr}");
        // Canonical mode and echo: raw mode is off.
        assert!(screen.contains("mode icanon"), "{screen}");
        assert!(screen.contains("mode echo"), "{screen}");
    })
    .await
    .expect("tmux session");
}
