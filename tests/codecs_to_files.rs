//! Every `[encode] codec` produces a file that ffprobe decodes with that codec, in the
//! container the output's extension asks for, with the audio codec that container gets.

mod common;
use common::*;

#[test]
fn each_codec_records_a_decodable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("mkdir");
    let cases = [
        ("h264", "mp4", "h264", "aac"),
        ("vp8", "webm", "vp8", "opus"),
        ("vp9", "mkv", "vp9", "opus"),
        ("av1", "mkv", "av1", "opus"),
    ];
    for (codec, ext, _, _) in cases {
        write_pipeline(
            &pipelines,
            codec,
            &format!(
                "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\nframerate = 15\n[encode]\ncodec = \"{codec}\"\nbitrate = 300\n[[output]]\nkind = \"file\"\npath = \"{}/{{name}}.{ext}\"\n",
                dir.path().display()
            ),
        );
    }
    let server = TestServer::start(&pipelines);
    for (codec, ..) in cases {
        wait_state(&server.base, codec, "playing");
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let encoders: Vec<String> = cases
        .iter()
        .map(|(codec, ..)| {
            get(&format!("{}/api/pipelines/{codec}", server.base)).json["chosen"][0]["element"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    server.shutdown();

    for ((codec, ext, video_codec, audio_codec), encoder) in cases.iter().zip(encoders) {
        let file = dir.path().join(format!("{codec}.{ext}"));
        let probe = ffprobe(&file.display().to_string(), None)
            .unwrap_or_else(|e| panic!("{codec} ({encoder}): {e}"));
        let video = probe.video().unwrap_or_else(|| panic!("{codec}: no video"));
        assert_eq!(video.codec, *video_codec, "{codec} via {encoder}");
        assert_eq!((video.width, video.height), (320, 240));
        // 8-bit 4:2:0, what every player decodes (x264enc would pick 10-bit 4:4:4 otherwise).
        assert_eq!(video.pix_fmt, "yuv420p", "{codec} via {encoder}");
        assert!(
            video.frames >= 15,
            "{codec} via {encoder}: {} frames",
            video.frames
        );
        assert_eq!(
            probe.audio().map(|a| a.codec.as_str()),
            Some(*audio_codec),
            "{codec}"
        );
    }
}
