//! Geospatial index keys: the one place a `"2dsphere"` or `"2d"` field's
//! keys come from (the WAL's key maps, in memory and in the materialized
//! store, and the server's query coverings all call it).
//!
//! 2dsphere: S2-like cell ids. A unit vector is projected (linearly, not
//! S2's quadratic transform: the cells are less even in size, which only
//! costs a covering some precision) onto the face of the cube it points
//! through; the face's square is a quadtree 30 levels deep, its position
//! in Z-order. An id is `face (3 bits) | position (2 bits a level) | 1 |
//! zeros`, so, as in S2, the descendants of a cell are exactly the ids in
//! `[id - (lsb - 1), id + (lsb - 1)]` (one contiguous range) and a cell's
//! ancestors are found by moving the marker bit up. Keys are those ids as
//! `Int64`s, offset so that signed order is the ids' order.
//! - A point indexes as its leaf cell (level 30, about 1 cm on a face edge);
//! - any other geometry as a covering of its bounding cap: the deepest
//!   level at which at most [`DOCUMENT_CELLS`] cells meet the cap, all
//!   cells at one level (conservative: the exact predicate re-checks);
//! - a query region is covered the same way with up to [`QUERY_CELLS`]
//!   cells; a document cell and a query cell overlap iff one contains the
//!   other, so a query reads each covering cell's descendant range and its
//!   ancestors' exact ids ([`query_ranges`]).
//!
//! 2d: the geohash of `(x, y)`: each coordinate quantized to `bits` bits
//! over `[min, max)` (`floor`, monotonic, so a box of coordinates is a box
//! of cells), the bits interleaved, left-aligned in 64 bits, offset to
//! signed order; a query box is a few prefix ranges ([`Flat::cover_box`]).
//!
//! Every invalid location is refused before a write reaches here
//! (16755/16804/13026/13027), but the fold replays old data too: anything
//! this code cannot read (a bad type, out-of-range or non-finite numbers)
//! gives no key rather than an error or a panic. Such a document is then
//! missing from the index, as a document without the field is (2dsphere
//! indexes are sparse, as MongoDB's version 2 and 3).

use bson::{Bson, Document};

/// The deepest level: a leaf cell.
pub const MAX_LEVEL: u8 = 30;
/// The most cells a stored geometry's covering holds.
pub const DOCUMENT_CELLS: usize = 8;
/// The most cells a query region's covering holds.
pub const QUERY_CELLS: usize = 32;
/// A margin added to every bounding cap (radians, about 6 cm): the exact
/// predicates count a point within about 1 cm of an edge as on it, and
/// floating point may put a point on a cell border on either side.
const MARGIN: f64 = 1e-8;

const POS_BITS: u32 = 61;

/// A unit vector.
pub type V3 = [f64; 3];

/// The unit vector of a longitude and latitude in degrees.
pub fn unit(lng: f64, lat: f64) -> V3 {
    let (lng, lat) = (lng.to_radians(), lat.to_radians());
    [lat.cos() * lng.cos(), lat.cos() * lng.sin(), lat.sin()]
}

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalize(a: V3) -> Option<V3> {
    let n = dot(a, a).sqrt();
    (n > 0.0 && n.is_finite()).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

/// The angle between two unit vectors (radians), stable for small angles.
pub fn angle(a: V3, b: V3) -> f64 {
    let cross = [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ];
    dot(cross, cross).sqrt().atan2(dot(a, b))
}

/// A spherical cap: every unit vector within `radius` radians of `center`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cap {
    pub center: V3,
    pub radius: f64,
}

impl Cap {
    /// A cap holding every given position (degrees), or the whole sphere
    /// when they do not fit in a hemisphere (the caller's region is then
    /// not within the cap of its vertices). `None` for no positions.
    pub fn around(points: &[(f64, f64)]) -> Option<Cap> {
        let vs: Vec<V3> = points.iter().map(|&(x, y)| unit(x, y)).collect();
        Cap::around_vectors(&vs)
    }

    /// [`Cap::around`] of unit vectors.
    pub fn around_vectors(vs: &[V3]) -> Option<Cap> {
        let sum = vs
            .iter()
            .fold([0.0; 3], |s, v| [s[0] + v[0], s[1] + v[1], s[2] + v[2]]);
        let first = *vs.first()?;
        let center = normalize(sum).unwrap_or(first);
        let radius = vs.iter().map(|v| angle(center, *v)).fold(0.0, f64::max);
        Some(Cap {
            center,
            radius: if radius < std::f64::consts::FRAC_PI_2 {
                radius
            } else {
                std::f64::consts::PI
            },
        })
    }

    fn meets(&self, other: &Cap) -> bool {
        angle(self.center, other.center) <= self.radius + other.radius + MARGIN
    }
}

/// A cell of the cube's quadtrees (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellId(u64);

impl CellId {
    /// The leaf cell of a unit vector (`None` for a non-finite one).
    pub fn leaf(v: V3) -> Option<CellId> {
        if !v.iter().all(|c| c.is_finite()) {
            return None;
        }
        let axis = (0..3).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))?;
        let major = v[axis];
        if major == 0.0 {
            return None;
        }
        let face = axis as u64 + if major < 0.0 { 3 } else { 0 };
        let u = v[(axis + 1) % 3] / major.abs();
        let w = v[(axis + 2) % 3] / major.abs();
        let leaf_cells = f64::from(1u32 << MAX_LEVEL);
        let quantize = |c: f64| ((c + 1.0) / 2.0 * leaf_cells).clamp(0.0, leaf_cells - 1.0) as u32;
        let pos = interleave(quantize(u), quantize(w));
        Some(CellId((face << POS_BITS) | (pos << 1) | 1))
    }

    fn face_cell(face: u64) -> CellId {
        CellId((face << POS_BITS) | (1 << (POS_BITS - 1)))
    }

    fn lsb(self) -> u64 {
        self.0 & self.0.wrapping_neg()
    }

    pub fn level(self) -> u8 {
        MAX_LEVEL - (self.0.trailing_zeros() / 2) as u8
    }

    /// The ancestor at `level` (itself at its own level or deeper).
    pub fn parent(self, level: u8) -> CellId {
        if level >= self.level() {
            return self;
        }
        let lsb = 1u64 << (2 * u32::from(MAX_LEVEL - level));
        CellId((self.0 & lsb.wrapping_neg()) | lsb)
    }

    fn children(self) -> [CellId; 4] {
        let lsb = self.lsb();
        let child = lsb >> 2;
        let first = self.0 - lsb + child;
        [0, 1, 2, 3].map(|k| CellId(first + 2 * child * k))
    }

    /// The lowest and highest ids of the cell's descendants (itself included).
    pub fn range(self) -> (CellId, CellId) {
        let below = self.lsb() - 1;
        (CellId(self.0 - below), CellId(self.0 + below))
    }

    /// The key an index stores: the id as an `Int64` in the same order.
    pub fn key(self) -> i64 {
        (self.0 ^ (1 << 63)) as i64
    }

    /// A cap holding the whole cell: its edges are great-circle arcs (the
    /// projection is linear), so its farthest points are its corners.
    fn bound(self) -> Cap {
        let face = (self.0 >> POS_BITS) as usize;
        let (axis, sign) = (face % 3, if face < 3 { 1.0 } else { -1.0 });
        let (i, j) = deinterleave((self.0 & ((1 << POS_BITS) - 1)) >> 1);
        let size = 1u32 << (MAX_LEVEL - self.level());
        let (i0, j0) = (i & !(size - 1), j & !(size - 1));
        let leaf_cells = f64::from(1u32 << MAX_LEVEL);
        let to_uv = |c: u32| f64::from(c) / leaf_cells * 2.0 - 1.0;
        let at = |u: f64, w: f64| {
            let mut p = [0.0; 3];
            p[axis] = sign;
            p[(axis + 1) % 3] = u;
            p[(axis + 2) % 3] = w;
            normalize(p).unwrap_or([1.0, 0.0, 0.0])
        };
        let (u0, u1) = (to_uv(i0), to_uv(i0) + 2.0 * f64::from(size) / leaf_cells);
        let (w0, w1) = (to_uv(j0), to_uv(j0) + 2.0 * f64::from(size) / leaf_cells);
        let center = at((u0 + u1) / 2.0, (w0 + w1) / 2.0);
        let radius = [at(u0, w0), at(u0, w1), at(u1, w0), at(u1, w1)]
            .iter()
            .map(|c| angle(center, *c))
            .fold(0.0, f64::max);
        Cap {
            center,
            radius: radius * (1.0 + 1e-9),
        }
    }
}

fn interleave(i: u32, j: u32) -> u64 {
    let spread = |x: u32| {
        let mut x = u64::from(x);
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x << 2)) & 0x3333_3333_3333_3333;
        (x | (x << 1)) & 0x5555_5555_5555_5555
    };
    (spread(i) << 1) | spread(j)
}

fn deinterleave(z: u64) -> (u32, u32) {
    let squash = |mut x: u64| {
        x &= 0x5555_5555_5555_5555;
        x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
        x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
        ((x | (x >> 16)) & 0xFFFF_FFFF) as u32
    };
    (squash(z >> 1), squash(z))
}

/// Cells of one level covering `cap`: the deepest level at which at most
/// `max_cells` cells meet it (the six faces at worst). Each level tests at
/// most `4 * max_cells` cells, so the work is bounded whatever the cap.
pub fn cover(cap: Cap, max_cells: usize) -> Vec<CellId> {
    let cap = Cap {
        center: cap.center,
        radius: if cap.radius.is_nan() {
            std::f64::consts::PI
        } else {
            cap.radius.clamp(0.0, std::f64::consts::PI)
        },
    };
    let mut current: Vec<CellId> = (0..6)
        .map(CellId::face_cell)
        .filter(|c| c.bound().meets(&cap))
        .collect();
    for _ in 0..MAX_LEVEL {
        let mut next = Vec::with_capacity(4 * current.len());
        for c in &current {
            for child in c.children() {
                if child.bound().meets(&cap) {
                    next.push(child);
                }
            }
            if next.len() > max_cells {
                return current;
            }
        }
        current = next;
    }
    current
}

/// Inclusive key ranges an index scan reads to find every document whose
/// cells overlap `covering`: each cell's descendants and its ancestors'
/// own ids; sorted, merged, disjoint.
pub fn query_ranges(covering: &[CellId]) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for c in covering {
        let (lo, hi) = c.range();
        ranges.push((lo.key(), hi.key()));
        for level in 0..c.level() {
            let a = c.parent(level).key();
            ranges.push((a, a));
        }
    }
    merge(ranges)
}

fn merge(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// A 2d index's grid (`bits`, `min`, `max` of its spec; MongoDB's
/// defaults 26, -180, 180).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flat {
    pub bits: u32,
    pub min: f64,
    pub max: f64,
}

impl Flat {
    pub fn of_spec(spec: &Document) -> Option<Flat> {
        let number = |name: &str, default: f64| match spec.get(name) {
            None => Some(default),
            Some(Bson::Int32(n)) => Some(f64::from(*n)),
            Some(Bson::Int64(n)) => Some(*n as f64),
            Some(Bson::Double(x)) => Some(*x),
            Some(_) => None,
        };
        let bits = number("bits", 26.0)?;
        let (min, max) = (number("min", -180.0)?, number("max", 180.0)?);
        // `createIndexes` refuses anything else (72); old data gets no map.
        ((1.0..=32.0).contains(&bits) && min.is_finite() && max.is_finite() && min < max).then_some(
            Flat {
                bits: bits as u32,
                min,
                max,
            },
        )
    }

    fn cells(&self) -> f64 {
        f64::from(self.bits).exp2()
    }

    /// The cell index of one coordinate (clamped into the grid).
    fn quantize(&self, c: f64) -> u32 {
        let at = ((c - self.min) / (self.max - self.min) * self.cells()).floor();
        at.clamp(0.0, self.cells() - 1.0) as u32
    }

    fn key_of(&self, code: u64) -> i64 {
        ((code << (64 - 2 * self.bits)) ^ (1 << 63)) as i64
    }

    /// The key of a point inside `[min, max)` on both axes, else `None`.
    pub fn key(&self, x: f64, y: f64) -> Option<i64> {
        let inside = |c: f64| c >= self.min && c < self.max;
        (inside(x) && inside(y))
            .then(|| self.key_of(interleave(self.quantize(x), self.quantize(y))))
    }

    /// Inclusive key ranges holding every point of the box `[x0, x1] ×
    /// [y0, y1]` (at most 16 prefix cells; empty when the box misses the
    /// grid or is not a box).
    pub fn cover_box(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<(i64, i64)> {
        if [x0, y0, x1, y1].iter().any(|c| c.is_nan())
            || x0 > x1
            || y0 > y1
            || x1 < self.min
            || y1 < self.min
            || x0 >= self.max
            || y0 >= self.max
        {
            return Vec::new();
        }
        let (i0, i1) = (self.quantize(x0), self.quantize(x1));
        let (j0, j1) = (self.quantize(y0), self.quantize(y1));
        // The deepest level at which the box spans at most 4 cells a side.
        let mut shift = 0;
        while shift < self.bits
            && (((i1 >> shift) - (i0 >> shift)) > 3 || ((j1 >> shift) - (j0 >> shift)) > 3)
        {
            shift += 1;
        }
        let mut ranges = Vec::new();
        for i in (i0 >> shift)..=(i1 >> shift) {
            for j in (j0 >> shift)..=(j1 >> shift) {
                let prefix = interleave(i, j);
                let (lo, hi) = match 1u64.checked_shl(2 * shift) {
                    Some(width) => (prefix * width, prefix * width + (width - 1)),
                    None => (0, u64::MAX >> (64 - 2 * self.bits)),
                };
                ranges.push((self.key_of(lo), self.key_of(hi)));
            }
        }
        merge(ranges)
    }
}

/// What an index field of a geo kind indexes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GeoField {
    Sphere,
    Flat(Flat),
}

impl GeoField {
    /// The geo kind of a key pattern's value in `spec`, if it is one.
    pub fn of(direction: &Bson, spec: &Document) -> Option<Option<GeoField>> {
        match direction {
            Bson::String(s) if s == "2dsphere" => Some(Some(GeoField::Sphere)),
            Bson::String(s) if s == "2d" => Some(Flat::of_spec(spec).map(GeoField::Flat)),
            _ => None,
        }
    }

    /// The keys of the values at a path (each value a location, or an
    /// array of locations), deduplicated; empty when none is readable.
    pub fn keys(&self, values: &[&Bson]) -> Vec<i64> {
        let mut out = Vec::new();
        for v in values {
            match self.location_keys(v) {
                Some(keys) => out.extend(keys),
                None => {
                    if let Bson::Array(items) = v {
                        for item in items {
                            out.extend(self.location_keys(item).unwrap_or_default());
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The keys of one location; `None` when `v` is not one.
    fn location_keys(&self, v: &Bson) -> Option<Vec<i64>> {
        match self {
            GeoField::Flat(flat) => {
                let (x, y) = pair(v)?;
                Some(flat.key(x, y).into_iter().collect())
            }
            GeoField::Sphere => {
                let points = match pair(v) {
                    Some(p) => vec![p],
                    None => geojson_positions(v)?,
                };
                if points
                    .iter()
                    .any(|&(x, y)| !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y))
                {
                    return Some(Vec::new());
                }
                Some(match points.as_slice() {
                    [] => Vec::new(),
                    [(x, y)] => CellId::leaf(unit(*x, *y))
                        .map(CellId::key)
                        .into_iter()
                        .collect(),
                    _ => match Cap::around(&points) {
                        Some(cap) => cover(cap, DOCUMENT_CELLS)
                            .into_iter()
                            .map(CellId::key)
                            .collect(),
                        None => Vec::new(),
                    },
                })
            }
        }
    }
}

fn number(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(x) => Some(*x),
        Bson::Decimal128(d) => d.to_string().parse().ok(),
        _ => None,
    }
}

/// A legacy pair: an array or document whose first two values are numbers.
fn pair(v: &Bson) -> Option<(f64, f64)> {
    let mut values: Box<dyn Iterator<Item = &Bson>> = match v {
        Bson::Array(a) => Box::new(a.iter()),
        Bson::Document(d) => Box::new(d.values()),
        _ => return None,
    };
    let x = number(values.next()?)?;
    let y = number(values.next()?)?;
    Some((x, y))
}

/// Every position of a GeoJSON object (collections included, nesting
/// bounded as BSON's depth is), or `None` when `v` is not one.
fn geojson_positions(v: &Bson) -> Option<Vec<(f64, f64)>> {
    let Bson::Document(d) = v else { return None };
    let Some(Bson::String(_)) = d.get("type") else {
        return None;
    };
    let mut out = Vec::new();
    if let Some(Bson::Array(gs)) = d.get("geometries") {
        for g in gs {
            out.extend(geojson_positions(g)?);
        }
        return Some(out);
    }
    fn walk(v: &Bson, out: &mut Vec<(f64, f64)>) -> Option<()> {
        let Bson::Array(items) = v else { return None };
        if let (Some(x), Some(y)) = (
            items.first().and_then(number),
            items.get(1).and_then(number),
        ) {
            out.push((x, y));
            return Some(());
        }
        items.iter().try_for_each(|i| walk(i, out))
    }
    walk(d.get("coordinates")?, &mut out)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    #[test]
    fn descendants_are_one_range_and_ancestors_contain() {
        let leaf = CellId::leaf(unit(2.35, 48.85)).unwrap();
        assert_eq!(leaf.level(), 30);
        for level in 0..30 {
            let p = leaf.parent(level);
            assert_eq!(p.level(), level);
            let (lo, hi) = p.range();
            assert!(lo <= leaf && leaf <= hi);
            assert!(p.children().iter().any(|c| {
                let (a, b) = c.range();
                a <= leaf && leaf <= b
            }));
        }
        assert!(CellId::leaf([f64::NAN, 0.0, 0.0]).is_none());
        assert!(CellId::leaf([0.0, 0.0, 0.0]).is_none());
    }

    #[test]
    fn a_point_is_in_its_covering() {
        for (x, y) in [
            (0.0, 0.0),
            (180.0, 0.0),
            (-180.0, 89.9),
            (45.0, 45.0),
            (0.0, -90.0),
        ] {
            let leaf = CellId::leaf(unit(x, y)).unwrap();
            let covering = cover(
                Cap {
                    center: unit(x + 0.001, y * 0.999),
                    radius: 0.01,
                },
                QUERY_CELLS,
            );
            assert!(covering.len() <= QUERY_CELLS);
            let ranges = query_ranges(&covering);
            assert!(
                ranges
                    .iter()
                    .any(|(lo, hi)| *lo <= leaf.key() && leaf.key() <= *hi),
                "{x} {y}"
            );
        }
        // Hostile caps stay bounded.
        assert!(
            cover(
                Cap {
                    center: unit(0.0, 0.0),
                    radius: f64::NAN
                },
                8
            )
            .len()
                <= 8
        );
        assert!(
            cover(
                Cap {
                    center: unit(0.0, 0.0),
                    radius: 1e9
                },
                8
            )
            .len()
                <= 8
        );
    }

    #[test]
    fn unreadable_locations_give_no_key() {
        let f = GeoField::Sphere;
        assert!(f.keys(&[&bson!("x")]).is_empty());
        assert!(f.keys(&[&bson!([500, 0])]).is_empty());
        assert!(
            f.keys(&[&bson!({"type": "Point", "coordinates": "x"})])
                .is_empty()
        );
        assert_eq!(f.keys(&[&bson!([[1, 2], [3, 4]])]).len(), 2);
        let line = bson!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]});
        assert!(!f.keys(&[&line]).is_empty() && f.keys(&[&line]).len() <= DOCUMENT_CELLS);
        let flat = Flat {
            bits: 26,
            min: -180.0,
            max: 180.0,
        };
        assert!(flat.key(180.0, 0.0).is_none());
        assert!(flat.key(f64::NAN, 0.0).is_none());
        let k = flat.key(10.0, 20.0).unwrap();
        assert!(
            flat.cover_box(9.0, 19.0, 11.0, 21.0)
                .iter()
                .any(|(lo, hi)| *lo <= k && k <= *hi)
        );
        assert!(flat.cover_box(f64::NAN, 0.0, 1.0, 1.0).is_empty());
        assert!(flat.cover_box(-1e300, -1e300, 1e300, 1e300).len() <= 16);
    }
}
