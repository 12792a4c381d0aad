//! Debian's real Icecast on loopback, with a config written here and a source fed by the test:
//! the plain HTTP server that `make bench-icecast` compares earshot with.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{TempDir, free_port, read_head, test_samples};

/// The feed's format: 44.1 kHz 16-bit stereo PCM, as `make bench-icecast` sends it.
pub const BYTE_RATE: u32 = 44_100 * 4;
const SOURCE_PASSWORD: &str = "icecast test source";

/// A running icecast2, killed when dropped.
pub struct Icecast {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Icecast {
    /// Starts icecast2 on a free loopback port and waits until it answers. As root (CI) it
    /// drops to the Debian package's user, as Icecast refuses to run as root.
    pub fn start(name: &str) -> Icecast {
        let dir = TempDir::new(name);
        let port = free_port();
        let log = dir.join("log");
        std::fs::create_dir_all(&log).unwrap();
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let owner = if root {
            let status = Command::new("chown")
                .args(["-R", "icecast2:icecast"])
                .arg(&dir.0)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown to icecast2 (installed with icecast2)"
            );
            "<changeowner><user>icecast2</user><group>icecast</group></changeowner>"
        } else {
            ""
        };
        let config = format!(
            "<icecast>
  <limits><clients>100</clients><sources>2</sources><source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect><burst-size>65535</burst-size></limits>
  <authentication><source-password>{SOURCE_PASSWORD}</source-password>
    <admin-user>admin</admin-user><admin-password>{SOURCE_PASSWORD}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{owner}</security>
</icecast>
",
            log.display()
        );
        let path = dir.join("icecast.xml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("icecast2")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("icecast.out")).unwrap())
            .spawn()
            .expect("icecast2 is installed (scripts/install-test-deps.sh)");
        let mut icecast = Icecast { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while icecast.get("/status-json.xsl") != 200 {
            if let Ok(Some(status)) = icecast.child.try_wait() {
                panic!("icecast2 exited ({status}): {}", icecast.log());
            }
            assert!(
                Instant::now() < deadline,
                "icecast2 did not answer: {}",
                icecast.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        icecast
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, mount: &str) -> String {
        format!("http://127.0.0.1:{}{mount}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The status of a GET, read from the response head alone (a mount's body never ends).
    fn get(&self, path: &str) -> u16 {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))
        else {
            return 0;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return 0;
        }
        read_head(&mut stream).0
    }

    /// Icecast's own output and error log, for a failure's message.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("icecast.out"), read("log/error.log"))
    }

    /// Feeds `mount` a WAV stream in real time, as `make bench-icecast`'s ffmpeg does (an HTTP
    /// PUT with the source password), and returns once Icecast serves the mount.
    pub fn feed(&self, mount: &str) -> Feed {
        let mut stream = TcpStream::connect(self.addr()).unwrap();
        let auth = data_encoding::BASE64.encode(format!("source:{SOURCE_PASSWORD}").as_bytes());
        let head = format!(
            "PUT {mount} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: audio/wav\r\nIce-Public: 0\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (status, text) = read_head(&mut stream);
        assert_eq!(
            status,
            200,
            "Icecast refused the source: {text}\n{}",
            self.log()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = stop.clone();
            move || pace(stream, &stop)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.get(mount) != 200 {
            assert!(
                Instant::now() < deadline,
                "{mount} never served: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        Feed {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A source sending to Icecast until dropped.
pub struct Feed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A WAV header, then 20 ms of PCM every 20 ms. hound writes the header of an empty file: an
/// endless stream has no sizes to give, and Icecast relays the bytes without reading them.
fn pace(mut stream: TcpStream, stop: &AtomicBool) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = std::io::Cursor::new(Vec::new());
    hound::WavWriter::new(&mut wav, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let wav = wav.into_inner();
    if stream.write_all(&wav).is_err() {
        return;
    }
    let piece: Vec<u8> = test_samples(882 * 2, 7)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let start = Instant::now();
    let mut sent = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if stream.write_all(&piece).is_err() {
            return;
        }
        sent += 1;
        let due = start + Duration::from_millis(20) * sent;
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}
