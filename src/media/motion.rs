//! Motion in the frames campeer already captures, pure: each frame's luma is averaged down to
//! a small grid and compared with a slowly adapting background. What must not read as motion:
//! sensor noise and a swaying branch (each cell learns how much it flickers, and the threshold
//! rises with it), an exposure step or a light switched on (the picture's overall shift in
//! brightness is taken out first, and a change over most of the picture at once re-seeds the
//! background instead of counting), and anything inside the rectangles to ignore. Motion
//! starts after [`FRAMES_TO_START`] frames in a row over the minimum area, and stops after
//! the quiet time without any. Issue 25's groundwork: nothing feeds it frames yet.

use std::time::{Duration, Instant};

/// The grid the picture is averaged down to: cells of 10x10 pixels at 640x480.
pub const GRID_WIDTH: usize = 64;
pub const GRID_HEIGHT: usize = 48;
/// Frames in a row over the minimum area before motion starts: one frame of change is a
/// glitch, two at 30 fps are 66 ms.
pub const FRAMES_TO_START: u32 = 2;
/// Frames that seed the background before anything counts.
const WARM_UP_FRAMES: u32 = 5;
/// How fast a cell's background follows the picture per frame while nothing moves there (and
/// a tenth of that where something does, so that a parked car becomes background in a minute).
const BACKGROUND_RATE: f32 = 0.05;
/// How fast a cell learns how much it flickers.
const NOISE_RATE: f32 = 0.02;
/// A change over this share of the picture at once is light, not motion.
const LIGHTING_CHANGE: f32 = 0.6;
/// Pixels sampled across a picture's width at most (every second one at 640x480, every fourth
/// at 1280x720): a cell's mean from a few dozen pixels is as good as from all of them.
const SAMPLES_ACROSS: usize = 320;

/// A rectangle of the picture, in fractions of its width and height (0.0 to 1.0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Zone {
    fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x < self.x + self.width && y >= self.y && y < self.y + self.height
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// 0.0 (only large, strong changes) to 1.0 (small, faint ones).
    pub sensitivity: f32,
    /// The least share of the picture (outside the ignored zones) that must change.
    pub min_area: f32,
    pub ignore: Vec<Zone>,
    /// Motion stops after this long without any.
    pub quiet: Duration,
}

impl Default for MotionSettings {
    fn default() -> Self {
        Self::from(&crate::config::MotionConfig::default())
    }
}

impl From<&crate::config::MotionConfig> for MotionSettings {
    fn from(config: &crate::config::MotionConfig) -> Self {
        Self {
            sensitivity: config.sensitivity as f32,
            min_area: config.min_area as f32,
            ignore: config
                .ignore
                .iter()
                .map(|rectangle| Zone {
                    x: rectangle.x as f32,
                    y: rectangle.y as f32,
                    width: rectangle.width as f32,
                    height: rectangle.height as f32,
                })
                .collect(),
            quiet: config.quiet(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MotionEvent {
    /// Motion began over `area` of the picture.
    Started {
        area: f32,
    },
    Stopped,
}

/// One camera's motion detector.
pub struct MotionDetector {
    settings: MotionSettings,
    width: usize,
    height: usize,
    background: Vec<f32>,
    noise: Vec<f32>,
    /// Cells outside the ignored zones.
    counted: Vec<bool>,
    counted_cells: usize,
    grid: Vec<f32>,
    /// Every how many pixels (and rows) one is sampled.
    step: usize,
    /// A cell's width in pixels (a picture's last few columns past a whole number of cells
    /// are left out).
    cell_width: usize,
    frames_seen: u32,
    over_in_a_row: u32,
    moving: bool,
    last_motion: Option<Instant>,
    area: f32,
}

impl MotionDetector {
    /// A detector for pictures of `width`×`height`.
    pub fn new(settings: MotionSettings, width: usize, height: usize) -> Self {
        let counted: Vec<bool> = (0..GRID_WIDTH * GRID_HEIGHT)
            .map(|cell| {
                let x = ((cell % GRID_WIDTH) as f32 + 0.5) / GRID_WIDTH as f32;
                let y = ((cell / GRID_WIDTH) as f32 + 0.5) / GRID_HEIGHT as f32;
                !settings.ignore.iter().any(|zone| zone.contains(x, y))
            })
            .collect();
        let counted_cells = counted.iter().filter(|c| **c).count();
        let step = (width / SAMPLES_ACROSS).max(1);
        Self {
            step,
            cell_width: (width / GRID_WIDTH).max(1),
            settings,
            width,
            height,
            background: vec![0.0; GRID_WIDTH * GRID_HEIGHT],
            noise: vec![2.0; GRID_WIDTH * GRID_HEIGHT],
            counted,
            counted_cells,
            grid: vec![0.0; GRID_WIDTH * GRID_HEIGHT],
            frames_seen: 0,
            over_in_a_row: 0,
            moving: false,
            last_motion: None,
            area: 0.0,
        }
    }

    /// The picture size it was made for.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Whether motion is going on.
    pub fn is_moving(&self) -> bool {
        self.moving
    }

    /// The share of the picture that changed in the last frame.
    pub fn area(&self) -> f32 {
        self.area
    }

    /// Takes a frame's luma plane (`stride` bytes a row) captured at `now`; says when motion
    /// starts or stops. A plane smaller than the detector's size counts only where it has
    /// pixels.
    pub fn observe(&mut self, now: Instant, luma: &[u8], stride: usize) -> Option<MotionEvent> {
        self.average_down(luma, stride);
        self.frames_seen = self.frames_seen.saturating_add(1);
        if self.frames_seen <= WARM_UP_FRAMES {
            let first = self.frames_seen == 1;
            for (background, cell) in self.background.iter_mut().zip(&self.grid) {
                *background = if first {
                    *cell
                } else {
                    (*background + *cell) / 2.0
                };
            }
            return None;
        }
        let shift = mean(&self.grid) - mean(&self.background);
        let base = 6.0 + (1.0 - self.settings.sensitivity.clamp(0.0, 1.0)) * 30.0;
        let mut changed = 0usize;
        let mut changed_anywhere = 0usize;
        for cell in 0..self.grid.len() {
            let (Some(&value), Some(background), Some(noise), Some(&counted)) = (
                self.grid.get(cell),
                self.background.get_mut(cell),
                self.noise.get_mut(cell),
                self.counted.get(cell),
            ) else {
                continue;
            };
            let difference = (value - shift - *background).abs();
            let threshold = base + 4.0 * *noise;
            let moved = difference > threshold;
            changed_anywhere += usize::from(moved);
            changed += usize::from(moved && counted);
            // A cell that flickers (noise, leaves) learns it, so it stops counting; capped so
            // that one large change does not blind the cell for long.
            *noise += NOISE_RATE * (difference.min(2.0 * threshold) - *noise);
            let rate = if moved {
                BACKGROUND_RATE / 10.0
            } else {
                BACKGROUND_RATE
            };
            *background += rate * (value - shift - *background);
        }
        let total = GRID_WIDTH * GRID_HEIGHT;
        if changed_anywhere as f32 >= LIGHTING_CHANGE * total as f32 {
            // Light, not motion: the picture as it is now is the background.
            self.background.copy_from_slice(&self.grid);
            self.area = 0.0;
            self.over_in_a_row = 0;
            return self.maybe_stop(now);
        }
        self.area = if self.counted_cells == 0 {
            0.0
        } else {
            changed as f32 / self.counted_cells as f32
        };
        if self.area >= self.settings.min_area && changed > 0 {
            self.over_in_a_row = self.over_in_a_row.saturating_add(1);
            if self.over_in_a_row >= FRAMES_TO_START {
                self.last_motion = Some(now);
                if !self.moving {
                    self.moving = true;
                    return Some(MotionEvent::Started { area: self.area });
                }
            }
            return None;
        }
        self.over_in_a_row = 0;
        self.maybe_stop(now)
    }

    fn maybe_stop(&mut self, now: Instant) -> Option<MotionEvent> {
        let quiet = self
            .last_motion
            .is_none_or(|at| now.saturating_duration_since(at) >= self.settings.quiet);
        if self.moving && quiet {
            self.moving = false;
            return Some(MotionEvent::Stopped);
        }
        None
    }

    /// Averages the luma plane down to the grid, sampling every `step`th pixel of every
    /// `step`th row.
    fn average_down(&mut self, luma: &[u8], stride: usize) {
        let mut sums = [0u32; GRID_WIDTH * GRID_HEIGHT];
        let mut counts = [0u32; GRID_WIDTH * GRID_HEIGHT];
        for y in (0..self.height).step_by(self.step) {
            let Some(row) = luma
                .get(y * stride..)
                .and_then(|rest| rest.get(..self.width))
            else {
                break;
            };
            let grid_row = y * GRID_HEIGHT / self.height * GRID_WIDTH;
            let (Some(row_sums), Some(row_counts)) = (
                sums.get_mut(grid_row..grid_row + GRID_WIDTH),
                counts.get_mut(grid_row..grid_row + GRID_WIDTH),
            ) else {
                continue;
            };
            // Each cell's pixels of this row lie side by side: summed a run at a time.
            let cells = row.chunks_exact(self.cell_width).take(GRID_WIDTH);
            for ((chunk, sum), count) in cells.zip(row_sums).zip(row_counts) {
                *sum += chunk
                    .iter()
                    .step_by(self.step)
                    .map(|&pixel| u32::from(pixel))
                    .sum::<u32>();
                *count += chunk.len().div_ceil(self.step) as u32;
            }
        }
        for ((cell, sum), count) in self.grid.iter_mut().zip(sums).zip(counts) {
            if count > 0 {
                *cell = sum as f32 / count as f32;
            }
        }
    }
}

fn mean(values: &[f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f32>() / values.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDTH: usize = 320;
    const HEIGHT: usize = 240;
    const FRAME: Duration = Duration::from_millis(33);

    /// A grey picture with sensor noise, made reproducibly.
    struct Scene {
        seed: u64,
        level: u8,
    }

    impl Scene {
        fn new(level: u8) -> Self {
            Self { seed: 7, level }
        }

        fn noise(&mut self) -> i16 {
            // xorshift: reproducible noise of ±8 levels.
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            (self.seed % 17) as i16 - 8
        }

        /// A frame, with a bright square at (x, y) of `size` pixels if given, and `extra`
        /// added to the left half's brightness.
        fn frame(&mut self, square: Option<(usize, usize, usize)>, extra_left: i16) -> Vec<u8> {
            let mut frame = vec![0u8; WIDTH * HEIGHT];
            for y in 0..HEIGHT {
                for x in 0..WIDTH {
                    let mut value = i16::from(self.level) + self.noise();
                    if x < WIDTH / 2 {
                        value += extra_left;
                    }
                    if let Some((sx, sy, size)) = square
                        && x >= sx
                        && x < sx + size
                        && y >= sy
                        && y < sy + size
                    {
                        value = 230;
                    }
                    frame[y * WIDTH + x] = value.clamp(0, 255) as u8;
                }
            }
            frame
        }
    }

    fn settings() -> MotionSettings {
        MotionSettings {
            quiet: Duration::from_secs(2),
            ..MotionSettings::default()
        }
    }

    /// Feeds `frames` frames from `make`, one every 33 ms from `start`; the events with their
    /// frame numbers.
    fn run(
        detector: &mut MotionDetector,
        start: Instant,
        frames: std::ops::Range<u32>,
        mut make: impl FnMut(u32) -> Vec<u8>,
    ) -> Vec<(u32, MotionEvent)> {
        frames
            .filter_map(|n| {
                let frame = make(n);
                detector
                    .observe(start + FRAME * n, &frame, WIDTH)
                    .map(|event| (n, event))
            })
            .collect()
    }

    #[test]
    fn a_still_picture_with_sensor_noise_is_not_motion() {
        let mut scene = Scene::new(100);
        let mut detector = MotionDetector::new(settings(), WIDTH, HEIGHT);
        let events = run(&mut detector, Instant::now(), 0..900, |_| {
            scene.frame(None, 0)
        });
        assert_eq!(events, []);
    }

    #[test]
    fn a_moving_object_starts_motion_at_once_and_quiet_stops_it() {
        let mut scene = Scene::new(100);
        let mut detector = MotionDetector::new(settings(), WIDTH, HEIGHT);
        let start = Instant::now();
        // Still for 3 s, a square crossing for 2 s, then still again.
        let events = run(&mut detector, start, 0..300, |n| {
            let square = (90..150)
                .contains(&n)
                .then(|| (((n - 90) * 4) as usize, 100, 30));
            scene.frame(square, 0)
        });
        let started = events
            .iter()
            .find(|(_, e)| matches!(e, MotionEvent::Started { .. }))
            .map(|(n, _)| *n);
        let stopped = events
            .iter()
            .find(|(_, e)| *e == MotionEvent::Stopped)
            .map(|(n, _)| *n);
        let started = started.expect("no motion for a moving square");
        // Within 1 s of the square appearing (frame 90): here, a few frames.
        assert!((90..=93).contains(&started), "{events:?}");
        // Off 2 s (60 frames) after the last motion, give or take the square's last frames.
        let stopped = stopped.expect("motion never stopped");
        assert!((200..=215).contains(&stopped), "{events:?}");
        assert_eq!(events.len(), 2, "{events:?}");
    }

    #[test]
    fn a_swaying_branch_is_learnt_and_stops_counting() {
        let mut scene = Scene::new(100);
        let mut detector = MotionDetector::new(settings(), WIDTH, HEIGHT);
        let mut flicker = Scene::new(0);
        // A patch of leaves that flickers between two brightnesses all the time.
        let events = run(&mut detector, Instant::now(), 0..1200, |_| {
            let mut frame = scene.frame(None, 0);
            let bright = flicker.noise() > 0;
            for y in 60..100 {
                for x in 200..240 {
                    frame[y * WIDTH + x] = if bright { 150 } else { 90 };
                }
            }
            frame
        });
        // At most the first seconds, while it learns; never again after 10 s, and still.
        assert!(
            events
                .iter()
                .all(|(n, event)| *n < 300 || *event == MotionEvent::Stopped),
            "{events:?}"
        );
        assert!(!detector.is_moving(), "{events:?}");
    }

    #[test]
    fn an_exposure_step_or_a_light_switched_on_is_not_motion() {
        let mut scene = Scene::new(90);
        let mut detector = MotionDetector::new(settings(), WIDTH, HEIGHT);
        let events = run(&mut detector, Instant::now(), 0..300, |n| {
            match n {
                0..100 => scene.level = 90,
                // The whole picture brighter at once: the camera's exposure stepping.
                100..200 => scene.level = 150,
                _ => {}
            }
            // Then a lamp on the left: that half brighter still.
            let lamp = if n >= 200 { 60 } else { 0 };
            scene.frame(None, lamp)
        });
        assert_eq!(events, []);
    }

    #[test]
    fn motion_inside_an_ignored_zone_is_not_motion() {
        let mut scene = Scene::new(100);
        let ignore = vec![Zone {
            x: 0.0,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        }];
        let settings = MotionSettings {
            ignore,
            ..settings()
        };
        let mut detector = MotionDetector::new(settings, WIDTH, HEIGHT);
        // A square moving about inside the top-left quarter only.
        let events = run(&mut detector, Instant::now(), 0..300, |n| {
            let x = (n as usize * 3) % 100;
            scene.frame(Some((x, 20, 30)), 0)
        });
        assert_eq!(events, []);
        // The same square outside the zone is motion.
        let mut scene = Scene::new(100);
        let mut detector = MotionDetector::new(
            MotionSettings {
                ignore: vec![Zone {
                    x: 0.0,
                    y: 0.0,
                    width: 0.5,
                    height: 0.5,
                }],
                ..MotionSettings::default()
            },
            WIDTH,
            HEIGHT,
        );
        let events = run(&mut detector, Instant::now(), 0..120, |n| {
            let x = 170 + (n as usize * 3) % 100;
            scene.frame(Some((x, 150, 30)), 0)
        });
        assert!(
            matches!(events.first(), Some((_, MotionEvent::Started { .. }))),
            "{events:?}"
        );
    }

    #[test]
    fn short_or_odd_planes_are_read_where_they_have_pixels() {
        let mut detector = MotionDetector::new(settings(), WIDTH, HEIGHT);
        let now = Instant::now();
        // Half a plane, an empty one, and a stride shorter than the width: no panic.
        assert_eq!(
            detector.observe(now, &vec![100; WIDTH * HEIGHT / 2], WIDTH),
            None
        );
        assert_eq!(detector.observe(now, &[], WIDTH), None);
        assert_eq!(detector.observe(now, &vec![100; WIDTH * HEIGHT], 10), None);
    }
}
