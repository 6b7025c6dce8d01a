"""soakd's Linux patches to copies of the published mlx-sys 0.7.0 / mlx-rs 0.33.0 crate sources.

Usage: patch.py MLX_SYS_DIR MLX_RS_DIR BUILD_RS
Each edit checks that the text it replaces is there, so a new crate version fails loudly here.
"""
import pathlib
import sys

sys_dir, rs_dir, build_rs = map(pathlib.Path, sys.argv[1:4])


def edit(path, old, new, count=1):
    text = path.read_text()
    found = text.count(old)
    if found != count:
        sys.exit(f"patch.py: {path}: expected {count} x {old!r}, found {found}")
    path.write_text(text.replace(old, new))


# 1+2. Build mlx-c only, against the wheel's MLX, linking libstdc++ (our own build script).
(sys_dir / "build.rs").write_text(build_rs.read_text())

# 3. gcc 12 has no <format>: a small {}-substituting stand-in for the 5 std::format calls.
io_h = sys_dir / "src/mlx-c/mlx/c/private/io.h"
edit(io_h, "#include <streambuf>\n", """#include <streambuf>
#include <sstream>
#include <string>

namespace {
inline void soakd_fmt_(std::ostringstream& o, const char* f) { o << f; }
template <class T, class... R>
void soakd_fmt_(std::ostringstream& o, const char* f, const T& v, const R&... r) {
  for (; *f; ++f) {
    if (f[0] == '{' && f[1] == '}') { o << v; soakd_fmt_(o, f + 2, r...); return; }
    o << *f;
  }
}
template <class... A>
std::string soakd_fmt(const char* f, const A&... a) {
  std::ostringstream o;
  soakd_fmt_(o, f, a...);
  return o.str();
}
} // namespace
""")
edit(io_h, "std::format(", "soakd_fmt(", count=5)

# 4a. half.h declares float16_t/bfloat16_t only on ARM; on x86 give C (bindgen) clang's _Float16
# (bindgen's __BindgenFloat16, as mlx-rs expects) and 16-bit bfloat16 storage, and C++ MLX's own
# half types (same size and layout), so the accessors exist.
half_h = sys_dir / "src/mlx-c/mlx/c/half.h"
edit(half_h, """#ifdef __cplusplus
}
#endif

#endif""", """#if !defined(HAS_FLOAT16) && !defined(HAS_BFLOAT16)
#define HAS_FLOAT16
#define HAS_BFLOAT16
#ifdef __cplusplus
}
#include "mlx/types/half_types.h"
typedef mlx::core::float16_t float16_t;
typedef mlx::core::bfloat16_t bfloat16_t;
extern "C" {
#else
#include <stdint.h>
typedef _Float16 float16_t;
typedef uint16_t bfloat16_t;
#endif
#endif

#ifdef __cplusplus
}
#endif

#endif""")

# 4b. mlx-rs seeds RandomState::new from mach_approximate_time (macOS only).
edit(rs_dir / "src/random.rs", "let now = unsafe { mach_time::mach_approximate_time() };",
     "let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)"
     ".map(|d| d.as_nanos() as u64).unwrap_or(0);")
edit(rs_dir / "src/random.rs", "use mach_sys::mach_time;\n", "")
print("patched", sys_dir, rs_dir)
