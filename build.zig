//! ouro's build. Zig is pinned in build.zig.zon and installed by ./zigw; see docs/building.md.
//!
//! Steps: install (default), install-tsan, test, stress, soak, bench, real-tests, asan, fuzz, fuzz-cov. The
//! C source lists below are the only ones: the install-tsan, asan, fuzz and fuzz-cov steps hand the same
//! lists to Debian's clang.
const std = @import("std");

const version: std.SemanticVersion = .{ .major = 0, .minor = 1, .patch = 0 };

/// The library's sources, one module folder each (docs/architecture.md).
const lib_sources = [_][]const u8{
    "core/error.c",
    "core/mem.c",
    "core/object.c",
    "core/type.c",
    "core/str.c",
    "core/hash.c",
    "core/bytes.c",
    "core/number.c",
    "core/repr.c",
    "core/tuple.c",
    "core/list.c",
    "core/dict.c",
    "core/set.c",
    "core/weakref.c",
    "core/leak.c",
    "gc/gc.c",
    "gc/scan.c",
    "alloc/os.c",
    "alloc/arena.c",
    "alloc/heap.c",
    "alloc/alloc.c",
    "alloc/stats.c",
    "threads/thread.c",
    "threads/stw.c",
    "threads/defer.c",
    "threads/lock.c",
    "threads/fork.c",
};

/// The drop-in malloc (libouro-malloc): the allocator layer with the files it needs, and the shim. Nothing
/// of threads/, gc/ or the objects (docs/alloc.md, "Drop-in malloc").
const malloc_sources = [_][]const u8{
    "core/error.c",
    "core/mem.c",
    "alloc/os.c",
    "alloc/arena.c",
    "alloc/heap.c",
    "alloc/alloc.c",
    "alloc/stats.c",
    "malloc/shim.c",
    "malloc/cxx.c",
};

/// The shim's flags: every symbol hidden but its SHIM_API ones, initial-exec TLS (it is preloaded or
/// linked, never dlopen'd), unwind tables (std::bad_alloc is thrown through operator new, malloc/cxx.c).
const malloc_flags = [_][]const u8{ "-DOURO_BUILD_CORE", "-DOURO_MALLOC_SHIM", "-fvisibility=hidden", "-ftls-model=initial-exec", "-funwind-tables" };

/// cmocka unit tests: one executable each.
const test_sources = [_][]const u8{
    "tests/test_alloc.c",
    "tests/test_alloc_threads.c",
    "tests/test_threads.c",
    "tests/test_object.c",
    "tests/test_number.c",
    "tests/test_str.c",
    "tests/test_list.c",
    "tests/test_dict.c",
    "tests/test_weakref.c",
    "tests/test_gc.c",
    "tests/test_lifecycle.c",
    "tests/test_faults.c",
    "tests/test_misuse.c",
    "tests/test_sanitizers.c",
};

/// The stress runner and its scenarios.
const stress_sources = [_][]const u8{
    "stress/main.c",
    "stress/support.c",
    "stress/soak.c",
    "stress/alloc_scenarios.c",
    "stress/threads_scenarios.c",
    "stress/object_scenarios.c",
    "stress/container_scenarios.c",
    "stress/gc_scenarios.c",
    "stress/lifecycle_scenarios.c",
    "threads/tsan_defaults.c",
};

/// The fuzz target (tests/fuzz/fuzz_api.c) with the replay driver that runs it over saved inputs.
const fuzz_replay_sources = [_][]const u8{
    "tests/fuzz/replay.c",
    "tests/fuzz/fuzz_api.c",
    "threads/tsan_defaults.c",
};

/// The benchmark driver and its suites.
const bench_sources = [_][]const u8{
    "bench/main.c",
    "bench/alloc_suite.c",
    "bench/stw_suite.c",
    "bench/rc_suite.c",
    "bench/gc_suite.c",
    "bench/real_suite.c",
};

const c_flags = [_][]const u8{
    "-std=c11",
    "-D_GNU_SOURCE",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
    "-fno-omit-frame-pointer",
};

const Sanitize = enum { none, thread };
const Refcount = enum { biased, atomic };

/// Everything that changes how the library is compiled.
const Config = struct {
    optimize: std.builtin.OptimizeMode,
    debug_level: u8,
    hardened: bool,
    torture: bool,
    sanitize: Sanitize,
    refcount: Refcount = .biased,
    valgrind: bool = false,
};

const Ctx = struct {
    b: *std.Build,
    target: std.Build.ResolvedTarget,
    tsan_supp: std.Build.LazyPath, // the folder of tsan_supp.inc (tsanSuppInclude)
};

/// threads/tsan.supp as the C string literal threads/tsan_defaults.c includes (tsan_supp.inc): one list
/// of suppressions, installed as a file and compiled, comments and all, into __tsan_default_suppressions.
fn tsanSuppInclude(b: *std.Build) std.Build.LazyPath {
    const supp = b.build_root.handle.readFileAlloc(b.allocator, "threads/tsan.supp", 1 << 20) catch |e|
        std.debug.panic("threads/tsan.supp: {s}", .{@errorName(e)});
    var lit: std.ArrayList(u8) = .empty;
    var lines = std.mem.splitScalar(u8, std.mem.trimRight(u8, supp, "\n"), '\n');
    while (lines.next()) |line| {
        lit.append(b.allocator, '"') catch @panic("OOM");
        for (line) |c| {
            if (c == '"' or c == '\\') lit.append(b.allocator, '\\') catch @panic("OOM");
            lit.append(b.allocator, c) catch @panic("OOM");
        }
        lit.appendSlice(b.allocator, "\\n\"\n") catch @panic("OOM");
    }
    const wf = b.addWriteFiles();
    _ = wf.add("tsan_supp.inc", lit.items);
    return wf.getDirectory();
}

fn configHeader(ctx: Ctx, cfg: Config) *std.Build.Step.ConfigHeader {
    return ctx.b.addConfigHeader(.{
        .style = .{ .cmake = ctx.b.path("include/ouro/config.h.in") },
        .include_path = "ouro/config.h",
    }, .{
        .OURO_VERSION_MAJOR = @as(i64, version.major),
        .OURO_VERSION_MINOR = @as(i64, version.minor),
        .OURO_VERSION_PATCH = @as(i64, version.patch),
        .OURO_DEBUG_LEVEL = @as(i64, cfg.debug_level),
        .OURO_HARDENED = @as(i64, @intFromBool(cfg.hardened)),
        .OURO_TORTURE = @as(i64, @intFromBool(cfg.torture)),
        .OURO_TSAN = @as(i64, @intFromBool(cfg.sanitize == .thread)),
        .OURO_REFCOUNT_ATOMIC = @as(i64, @intFromBool(cfg.refcount == .atomic)),
        .OURO_VALGRIND = @as(i64, @intFromBool(cfg.valgrind)),
    });
}

/// A C module with ouro's flags, includes and sanitizer setting (set on every module that is linked
/// together, or the TSan link fails).
fn cModule(ctx: Ctx, cfg: Config, ch: *std.Build.Step.ConfigHeader, files: []const []const u8, extra: []const []const u8) *std.Build.Module {
    const m = ctx.b.createModule(.{
        .target = ctx.target,
        .optimize = cfg.optimize,
        .link_libc = true,
        .sanitize_thread = cfg.sanitize == .thread,
        .omit_frame_pointer = false,
    });
    m.addIncludePath(ctx.b.path("include"));
    m.addIncludePath(ctx.b.path("."));
    m.addConfigHeader(ch);
    m.addIncludePath(ctx.tsan_supp);
    const flags = std.mem.concat(ctx.b.allocator, []const u8, &.{ &c_flags, extra }) catch @panic("OOM");
    m.addCSourceFiles(.{ .files = files, .flags = flags });
    return m;
}

fn addLib(ctx: Ctx, cfg: Config, ch: *std.Build.Step.ConfigHeader, linkage: std.builtin.LinkMode) *std.Build.Step.Compile {
    return addLibFor(ctx, cfg, ch, linkage, false);
}

/// installed: a library for other toolchains (gcc, Debian's clang) to link. Zig's Debug UBSan calls
/// handlers from Zig's own runtime, which such a link lacks; the installed libraries trap instead (the
/// same checks, SIGILL at the fault, no runtime).
fn addLibFor(ctx: Ctx, cfg: Config, ch: *std.Build.Step.ConfigHeader, linkage: std.builtin.LinkMode, installed: bool) *std.Build.Step.Compile {
    return addLibNamed(ctx, cfg, ch, linkage, installed, "ouro");
}

/// addLibFor with another library name: libNAME.a / libNAME.so (the bench's shared library).
fn addLibNamed(ctx: Ctx, cfg: Config, ch: *std.Build.Step.ConfigHeader, linkage: std.builtin.LinkMode, installed: bool, name: []const u8) *std.Build.Step.Compile {
    const m = cModule(ctx, cfg, ch, &lib_sources, &.{"-DOURO_BUILD_CORE"});
    if (installed and cfg.optimize == .Debug) m.sanitize_c = .trap;
    // A static archive records no dependencies (ouro.pc's Libs.private names them: `pkg-config --static`);
    // the shared library links them, so a program linked with it needs neither liburcu's headers nor
    // its development links (the public headers name no liburcu symbol).
    if (linkage == .dynamic) {
        m.linkSystemLibrary("pthread", .{});
        m.linkSystemLibrary("liburcu-qsbr", .{});
        m.linkSystemLibrary("liburcu-cds", .{});
    }
    if (linkage == .dynamic) m.pic = true;
    const lib = ctx.b.addLibrary(.{
        .name = name,
        .linkage = linkage,
        .root_module = m,
        .version = if (linkage == .dynamic) version else null,
    });
    if (linkage == .dynamic) lib.setVersionScript(ctx.b.path("core/exports.map"));
    return lib;
}

/// libouro-malloc: the shared library to preload (exports listed in malloc/exports.map) or the archive of
/// objects that the install step turns into libouro-malloc.a.
fn addMallocLib(ctx: Ctx, cfg: Config, ch: *std.Build.Step.ConfigHeader, linkage: std.builtin.LinkMode) *std.Build.Step.Compile {
    const m = cModule(ctx, cfg, ch, &malloc_sources, &malloc_flags);
    m.pic = true;
    const lib = ctx.b.addLibrary(.{
        .name = if (linkage == .dynamic) "ouro-malloc" else "ouro-malloc-objs",
        .linkage = linkage,
        .root_module = m,
    });
    if (linkage == .dynamic) lib.setVersionScript(ctx.b.path("malloc/exports.map"));
    return lib;
}

fn addExe(ctx: Ctx, cfg: Config, ch: *std.Build.Step.ConfigHeader, lib: *std.Build.Step.Compile, name: []const u8, files: []const []const u8) *std.Build.Step.Compile {
    const m = cModule(ctx, cfg, ch, files, &.{});
    m.linkLibrary(lib);
    m.linkSystemLibrary("pthread", .{});
    m.linkSystemLibrary("liburcu-qsbr", .{});
    m.linkSystemLibrary("liburcu-cds", .{});
    return ctx.b.addExecutable(.{ .name = name, .root_module = m });
}

/// Flags of the asan step's clang: ASan + UBSan, every UBSan report fatal.
const asan_flags = [_][]const u8{ "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined" };

/// Debian's clang with `flags`, ouro's flags and includes (the config header `ch`'s folder among them).
fn clangCommand(b: *std.Build, ch: *std.Build.Step.ConfigHeader, flags: []const []const u8) *std.Build.Step.Run {
    const cc = b.addSystemCommand(&.{"clang"});
    cc.addArgs(flags);
    cc.addArg("-DOURO_BUILD_CORE");
    cc.addArgs(&c_flags);
    cc.addArgs(&.{ "-Wno-unknown-warning-option", "-I" });
    cc.addDirectoryArg(b.path("include"));
    cc.addArg("-I");
    cc.addDirectoryArg(b.path("."));
    cc.addArg("-I");
    cc.addDirectoryArg(ch.getOutputDir());
    return cc;
}

/// The asan, fuzz and fuzz-cov steps' compiler: Debian's clang over the library's sources and `files`
/// (one command, the same lists as Zig's build), with `flags`, ouro's flags and includes, linked with
/// liburcu and `libs`. Returns the executable.
fn clangExe(b: *std.Build, ch: *std.Build.Step.ConfigHeader, flags: []const []const u8, name: []const u8, files: []const []const u8, libs: []const []const u8) std.Build.LazyPath {
    const cc = clangCommand(b, ch, flags);
    for (lib_sources) |s| cc.addFileArg(b.path(s));
    for (files) |s| cc.addFileArg(b.path(s));
    cc.addArg("-o");
    const out = cc.addOutputFileArg(name);
    cc.addArgs(libs);
    cc.addArgs(&.{ "-lurcu-qsbr", "-lurcu-cds", "-lurcu-common", "-lpthread", "-ldl" });
    return out;
}

/// The install-tsan step's compiler: one object of `src` by Debian's clang (`clangCommand`), its
/// headers recorded in a dep file so that a change to one rebuilds it. Returns the object.
fn clangObj(ctx: Ctx, ch: *std.Build.Step.ConfigHeader, flags: []const []const u8, src: []const u8) std.Build.LazyPath {
    const b = ctx.b;
    const cc = clangCommand(b, ch, flags);
    cc.addArg("-I");
    cc.addDirectoryArg(ctx.tsan_supp);
    cc.addArgs(&.{ "-MD", "-MF" });
    _ = cc.addDepFileOutputArg("obj.d");
    cc.addArg("-c");
    cc.addFileArg(b.path(src));
    cc.addArg("-o");
    const name = std.mem.replaceOwned(u8, b.allocator, src[0 .. src.len - ".c".len], "/", "_") catch @panic("OOM");
    return cc.addOutputFileArg(b.fmt("{s}.o", .{name}));
}

/// Flags of the TSan flavour's objects: TSan's instrumentation (clang 14's calls, every one of which gcc
/// 12's libtsan exports too), position-independent for both libraries, nothing that needs a runtime of
/// its own (no UBSan).
const tsan_lib_flags = [_][]const u8{ "-g", "-O1", "-fPIC", "-fsanitize=thread" };

pub fn build(b: *std.Build) void {
    const ctx: Ctx = .{ .b = b, .target = b.standardTargetOptions(.{}), .tsan_supp = tsanSuppInclude(b) };
    const optimize = b.standardOptimizeOption(.{});
    const sanitize = b.option(Sanitize, "sanitize", "Sanitizer for every module: none (default) or thread") orelse .none;
    const debug_level = b.option(u8, "debug-level", "0..3: checks compiled in (default 2 in Debug, 0 otherwise)") orelse
        @as(u8, if (optimize == .Debug) 2 else 0);
    const hardened_opt = b.option(bool, "hardened", "Encoded free lists and double-free detection (default: false for libouro, true for libouro-malloc; docs/alloc.md has the measured cost)");
    const hardened = hardened_opt orelse false;
    // The drop-in malloc is hardened unless -Dhardened=false says otherwise: its cost is mimalloc's
    // secure mode's (README, "Hardening"), and it serves programs nobody wrote for ouro.
    const malloc_hardened = hardened_opt orelse true;
    const torture = b.option(bool, "torture", "Shrunken pools, arenas and caches to give bugs a chance (default false)") orelse false;
    const stress_secs = b.option([]const u8, "stress-duration", "Seconds per scenario for the stress step (default: 120 s in all, split between the scenarios)");
    const soak_for = b.option([]const u8, "soak", "How long the soak step soaks: 90s, 2m, 1h or seconds (default 2m)") orelse "2m";
    const refcount = b.option(Refcount, "refcount", "Reference counting: biased (default) or atomic (every count one atomic counter: the baseline)") orelse .biased;
    const valgrind = b.option(bool, "valgrind", "Describe ouro's blocks to Valgrind's memcheck with client requests (<valgrind/memcheck.h>; default false)") orelse false;
    if (debug_level > 3) @panic("-Ddebug-level must be 0..3");

    const cfg: Config = .{ .optimize = optimize, .debug_level = debug_level, .hardened = hardened, .torture = torture, .sanitize = sanitize, .refcount = refcount, .valgrind = valgrind };
    const ch = configHeader(ctx, cfg);

    // ---- install: static and shared libraries, headers, config header, ouro.pc --------------------
    const static_lib = addLib(ctx, cfg, ch, .static); // the tests' (Zig's UBSan runtime in Debug)
    const installed_static = addLibFor(ctx, cfg, ch, .static, true);
    const shared_lib = addLibFor(ctx, cfg, ch, .dynamic, true);
    installed_static.installHeader(b.path("include/ouro.h"), "ouro.h");
    installed_static.installHeadersDirectory(b.path("include/ouro"), "ouro", .{ .include_extensions = &.{".h"} });
    installed_static.installConfigHeader(ch);
    b.installArtifact(installed_static);
    b.installArtifact(shared_lib);
    const pc = b.addWriteFiles().add("ouro.pc", b.fmt(
        \\prefix={s}
        \\libdir=${{prefix}}/lib
        \\includedir=${{prefix}}/include
        \\
        \\Name: ouro
        \\Description: concurrent runtime core: per-thread pools, biased refcounts, stop-the-world GC
        \\Version: {d}.{d}.{d}
        \\Libs: -L${{libdir}} -louro
        \\Libs.private: -lurcu-qsbr -lurcu-cds -lpthread
        \\Cflags: -I${{includedir}}
        \\
    , .{ b.install_prefix, version.major, version.minor, version.patch }));
    b.getInstallStep().dependOn(&b.addInstallFile(pc, "lib/pkgconfig/ouro.pc").step);

    // ---- the drop-in malloc: libouro-malloc.so (LD_PRELOAD) and libouro-malloc.a ----------------------
    // Always optimised without debug checks (it serves every allocation of a process), whatever
    // -Doptimize; hardened unless -Dhardened=false; -Dtorture carries over. The archive holds one object
    // in which every symbol but the exported ones is local (ld -r, objcopy --localize-hidden), so it
    // links beside libouro.a.
    const malloc_cfg: Config = .{ .optimize = .ReleaseFast, .debug_level = 0, .hardened = malloc_hardened, .torture = torture, .sanitize = .none };
    const malloc_ch = configHeader(ctx, malloc_cfg);
    const malloc_so = addMallocLib(ctx, malloc_cfg, malloc_ch, .dynamic);
    b.installArtifact(malloc_so);
    const malloc_objs = addMallocLib(ctx, malloc_cfg, malloc_ch, .static);
    const malloc_ar = b.addSystemCommand(&.{ "sh", "-c",
        \\set -e; in=$1 out=$2; o=${out%.a}.o
        \\ld -r --whole-archive "$in" -o "$o"
        \\objcopy --localize-hidden "$o"
        \\rm -f "$out"; ar rcs "$out" "$o"
    , "malloc-ar" });
    malloc_ar.addArtifactArg(malloc_objs);
    const malloc_a = malloc_ar.addOutputFileArg("libouro-malloc.a");
    b.getInstallStep().dependOn(&b.addInstallFile(malloc_a, "lib/libouro-malloc.a").step);

    // ---- install-tsan: the TSan flavour for embedders, built by Debian's clang ----------------------
    // For gcc and clang -fsanitize=thread programs (docs/embedding.md, "Hunting races in your server with
    // TSan"). The library's sources instrumented by clang (-O1 -g, the chosen debug level and options,
    // OURO_TSAN); libouro-tsan.so linked without -fsanitize=thread, so no sanitizer runtime is inside
    // either library: the program's compiler links its own. Headers in include/ouro-tsan (their config.h
    // says OURO_TSAN), so both flavours can share a prefix; share/ouro/tsan.supp and
    // lib/ouro-tsan-defaults.o carry the one list of suppressions (threads/tsan.supp).
    const tsan_step = b.step("install-tsan", "Install the TSan flavour for gcc and clang -fsanitize=thread programs (Debian's clang; no sanitizer runtime inside)");
    var tsan_cfg = cfg;
    tsan_cfg.sanitize = .thread;
    tsan_cfg.valgrind = false;
    const tsan_ch = configHeader(ctx, tsan_cfg);
    const tsan_ar = b.addSystemCommand(&.{ "ar", "rcsD" });
    const tsan_a = tsan_ar.addOutputFileArg("libouro-tsan.a");
    const tsan_so_name = b.fmt("libouro-tsan.so.{d}.{d}.{d}", .{ version.major, version.minor, version.patch });
    const tsan_ld = b.addSystemCommand(&.{ "clang", "-shared", "-g", b.fmt("-Wl,-soname,libouro-tsan.so.{d}", .{version.major}) });
    tsan_ld.addPrefixedFileArg("-Wl,--version-script=", b.path("core/exports.map"));
    for (lib_sources) |src| {
        const obj = clangObj(ctx, tsan_ch, &tsan_lib_flags, src);
        tsan_ar.addFileArg(obj);
        tsan_ld.addFileArg(obj);
    }
    tsan_ld.addArg("-o");
    const tsan_so = tsan_ld.addOutputFileArg(tsan_so_name);
    tsan_ld.addArgs(&.{ "-lurcu-qsbr", "-lurcu-cds", "-lurcu-common", "-lpthread", "-lm" });
    const tsan_defaults = clangObj(ctx, tsan_ch, &.{ "-g", "-O1", "-fPIC" }, "threads/tsan_defaults.c");
    const tsan_so_install = b.addInstallFile(tsan_so, b.fmt("lib/{s}", .{tsan_so_name}));
    const tsan_links = b.addSystemCommand(&.{ "sh", "-c", "cd \"$1\" && ln -sf \"$2\" libouro-tsan.so.$3 && ln -sf libouro-tsan.so.$3 libouro-tsan.so", "links" });
    tsan_links.addArgs(&.{ b.getInstallPath(.lib, ""), tsan_so_name, b.fmt("{d}", .{version.major}) });
    tsan_links.has_side_effects = true;
    tsan_links.step.dependOn(&tsan_so_install.step);
    const tsan_pc = b.addWriteFiles().add("ouro-tsan.pc", b.fmt(
        \\prefix={s}
        \\libdir=${{prefix}}/lib
        \\includedir=${{prefix}}/include/ouro-tsan
        \\tsan_supp=${{prefix}}/share/ouro/tsan.supp
        \\tsan_defaults=${{libdir}}/ouro-tsan-defaults.o
        \\
        \\Name: ouro-tsan
        \\Description: ouro instrumented for ThreadSanitizer; the program's -fsanitize=thread links the runtime
        \\Version: {d}.{d}.{d}
        \\Libs: -fsanitize=thread -L${{libdir}} -louro-tsan
        \\Libs.private: -lurcu-qsbr -lurcu-cds -lurcu-common -lpthread -lm
        \\Cflags: -fsanitize=thread -I${{includedir}}
        \\
    , .{ b.install_prefix, version.major, version.minor, version.patch }));
    for ([_]*std.Build.Step{
        &b.addInstallFile(tsan_a, "lib/libouro-tsan.a").step,
        &tsan_links.step,
        &b.addInstallFile(tsan_defaults, "lib/ouro-tsan-defaults.o").step,
        &b.addInstallFile(b.path("threads/tsan.supp"), "share/ouro/tsan.supp").step,
        &b.addInstallDirectory(.{ .source_dir = b.path("include"), .install_dir = .header, .install_subdir = "ouro-tsan", .include_extensions = &.{".h"} }).step,
        &b.addInstallFile(tsan_ch.getOutputFile(), "include/ouro-tsan/ouro/config.h").step,
        &b.addInstallFile(tsan_pc, "lib/pkgconfig/ouro-tsan.pc").step,
    }) |s| tsan_step.dependOn(s);

    // ---- stress: optimised with assertions and hardening, whatever the default mode -------------
    const stress_cfg: Config = .{ .optimize = .ReleaseFast, .debug_level = @max(debug_level, 1), .hardened = true, .torture = torture, .sanitize = sanitize, .refcount = refcount };
    const stress_ch = configHeader(ctx, stress_cfg);
    const stress_exe = addExe(ctx, stress_cfg, stress_ch, addLib(ctx, stress_cfg, stress_ch, .static), "ouro-stress", &stress_sources);
    b.installArtifact(stress_exe);
    const stress_run = b.addRunArtifact(stress_exe);
    if (b.args) |args| stress_run.addArgs(args) else if (stress_secs) |secs| stress_run.addArgs(&.{ "--duration", secs });
    b.step("stress", "Run every stress scenario (the main job)").dependOn(&stress_run.step);
    // soak: every scenario mixed for -Dsoak, growth of RSS and live objects judged (docs/stress.md, "Soak").
    const soak_run = b.addRunArtifact(stress_exe);
    soak_run.addArgs(&.{ "--soak", soak_for, "--soak-csv", b.getInstallPath(.prefix, "soak.csv") });
    if (b.args) |args| soak_run.addArgs(args);
    soak_run.step.dependOn(&b.addInstallArtifact(stress_exe, .{}).step); // makes zig-out/ for the CSV
    soak_run.has_side_effects = true;
    b.step("soak", "Soak: every stress scenario mixed for -Dsoak (default 2m); fails when RSS or live objects keep growing").dependOn(&soak_run.step);

    // ---- test: cmocka unit tests at the chosen mode, then a short stress pass -------------------
    const test_step = b.step("test", "Run the cmocka unit tests and a short stress pass");
    for (test_sources) |src| {
        const name = std.fs.path.stem(src);
        const exe = addExe(ctx, cfg, ch, static_lib, name, &.{ src, "threads/tsan_defaults.c" });
        exe.root_module.linkSystemLibrary("cmocka", .{});
        const run = b.addRunArtifact(exe);
        test_step.dependOn(&run.step);
    }
    const short_stress_exe = addExe(ctx, cfg, ch, static_lib, "ouro-stress-short", &stress_sources);
    const short_stress = b.addRunArtifact(short_stress_exe);
    short_stress.addArgs(&.{ "--duration", "1", "--short" });
    test_step.dependOn(&short_stress.step);
    // The soak's detector must catch a leak: an 8 s soak that leaks on purpose must fail on its growth.
    const leak_soak = b.addRunArtifact(short_stress_exe);
    leak_soak.addArgs(&.{ "--soak", "8s", "--soak-slice", "1", "--short", "--quiet", "--soak-inject-leak", "--soak-csv" });
    _ = leak_soak.addOutputFileArg("soak-leak.csv");
    leak_soak.expectExitCode(3);
    leak_soak.has_side_effects = true; // run every time, though its CSV output would let it be cached
    // Under TSan the RSS bound (a quarter of a mean that TSan's shadow memory inflates) can hide the
    // injected 16 MiB/s; the live objects must still give it away.
    if (cfg.sanitize != .thread) leak_soak.addCheck(.{ .expect_stderr_match = "FAIL soak: RSS kept growing after warm-up" });
    leak_soak.addCheck(.{ .expect_stderr_match = "FAIL soak: live objects kept growing after warm-up" });
    leak_soak.step.dependOn(&short_stress.step); // not beside it: both at once would share 2 cores
    test_step.dependOn(&leak_soak.step);
    // The drop-in malloc (tests/malloc/): a cmocka test under LD_PRELOAD, the same linked with
    // libouro-malloc.a beside libouro.a, C++'s operators (the system's g++ and libstdc++), real programs
    // and OURO_STATS. Not under TSan, whose runtime is the process's malloc.
    const malloc_test = b.step("test-malloc", "Run the drop-in malloc's tests (tests/malloc/; part of test)");
    test_step.dependOn(malloc_test);
    if (cfg.sanitize != .thread) {
        const dso = b.addLibrary(.{ .name = "ouro-malloc-testdso", .linkage = .dynamic, .root_module = cModule(ctx, cfg, ch, &.{"tests/malloc/dso.c"}, &.{}) });
        const mt_mod = cModule(ctx, cfg, ch, &.{"tests/malloc/test_malloc.c"}, &.{});
        mt_mod.linkSystemLibrary("cmocka", .{});
        const mt_exe = b.addExecutable(.{ .name = "test_malloc", .root_module = mt_mod });
        const mt_run = b.addSystemCommand(&.{"env"});
        mt_run.addPrefixedArtifactArg("LD_PRELOAD=", malloc_so);
        mt_run.addArtifactArg(mt_exe);
        mt_run.addArtifactArg(dso);
        mt_run.setName("run test_malloc (LD_PRELOAD=libouro-malloc.so)");
        malloc_test.dependOn(&mt_run.step);
        const ms_mod = cModule(ctx, cfg, ch, &.{ "tests/malloc/test_malloc.c", "threads/tsan_defaults.c" }, &.{"-DOURO_TEST_STATIC"});
        ms_mod.addObjectFile(malloc_a); // before the C library, which Zig links last
        ms_mod.linkLibrary(static_lib);
        for ([_][]const u8{ "cmocka", "pthread", "liburcu-qsbr", "liburcu-cds" }) |l| ms_mod.linkSystemLibrary(l, .{});
        const ms_run = b.addRunArtifact(b.addExecutable(.{ .name = "test_malloc_static", .root_module = ms_mod }));
        ms_run.addArtifactArg(dso);
        malloc_test.dependOn(&ms_run.step);
        const cxx = b.addSystemCommand(&.{ "g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-o" });
        const cxx_exe = cxx.addOutputFileArg("test_cxx");
        cxx.addFileArg(b.path("tests/malloc/test_cxx.cpp"));
        cxx.addArg("-ldl");
        const cxx_run = b.addSystemCommand(&.{"env"});
        cxx_run.addPrefixedArtifactArg("LD_PRELOAD=", malloc_so);
        cxx_run.addFileArg(cxx_exe);
        cxx_run.setName("run test_cxx (LD_PRELOAD=libouro-malloc.so)");
        cxx_run.expectStdOutEqual("ok\n");
        malloc_test.dependOn(&cxx_run.step);
        const progs = b.addSystemCommand(&.{"sh"});
        progs.addFileArg(b.path("tests/malloc/programs.sh"));
        progs.addArtifactArg(malloc_so);
        progs.has_side_effects = true;
        progs.setName("run tests/malloc/programs.sh (ls, sh, python3 under LD_PRELOAD)");
        malloc_test.dependOn(&progs.step);
    }
    // The fuzz target over its corpus, without libFuzzer (so under TSan too): tests/fuzz/.
    const replay_exe = addExe(ctx, cfg, ch, static_lib, "ouro-fuzz-replay", &fuzz_replay_sources);
    const replay_run = b.addRunArtifact(replay_exe);
    replay_run.addDirectoryArg(b.path("tests/fuzz/corpus"));
    test_step.dependOn(&replay_run.step);
    // The public headers as an embedder meets them: C11 and C++17 with every compiler here, -Wall -Wextra
    // -pedantic -Werror, only ouro_*/OURO_* names (tests/headers/check.py), from the headers as installed.
    const header_tree = b.addWriteFiles();
    _ = header_tree.addCopyDirectory(b.path("include"), "", .{ .include_extensions = &.{".h"} });
    _ = header_tree.addCopyFile(ch.getOutputFile(), "ouro/config.h");
    const headers_run = b.addSystemCommand(&.{ "python3", "tests/headers/check.py" });
    headers_run.addDirectoryArg(header_tree.getDirectory());
    headers_run.setEnvironmentVariable("ZIG", b.graph.zig_exe);
    headers_run.has_side_effects = true;
    // libouro.so loaded by dlopen through a plugin that links it, as an interpreter loads an extension
    // module (tests/dlopen/): its static TLS fits, the runtime works, and dlclose leaves it loaded.
    // Not under TSan, whose runtime must come with the program, not with a plugin.
    if (cfg.sanitize == .none) {
        const plugin_mod = cModule(ctx, cfg, ch, &.{"tests/dlopen/plugin.c"}, &.{});
        plugin_mod.sanitize_c = .trap; // as the installed library: no Zig UBSan runtime in a plugin
        plugin_mod.pic = true;
        plugin_mod.linkLibrary(shared_lib);
        plugin_mod.addRPath(shared_lib.getEmittedBinDirectory());
        const plugin = b.addLibrary(.{ .name = "ouro-dlopen-plugin", .linkage = .dynamic, .root_module = plugin_mod });
        const dl_mod = cModule(ctx, cfg, ch, &.{"tests/dlopen/main.c"}, &.{});
        dl_mod.sanitize_c = .trap;
        const dl_run = b.addRunArtifact(b.addExecutable(.{ .name = "dlopen-check", .root_module = dl_mod }));
        dl_run.addArtifactArg(plugin);
        dl_run.expectStdOutEqual("dlopen_check: ok (2 loads, 2 collections)\n");
        test_step.dependOn(&dl_run.step);
    }
    const headers_step = b.step("headers", "Check the public headers: C11/C++17 pedantic, ouro_* names only");
    headers_step.dependOn(&headers_run.step);
    test_step.dependOn(&headers_run.step);

    // ---- bench: always fully optimised, no checks ----------------------------------------------
    const bench_cfg: Config = .{ .optimize = .ReleaseFast, .debug_level = 0, .hardened = hardened, .torture = false, .sanitize = .none };
    const bench_ch = configHeader(ctx, bench_cfg);
    const bench_exe = addExe(ctx, bench_cfg, bench_ch, addLib(ctx, bench_cfg, bench_ch, .static), "ouro-bench", &bench_sources);
    bench_exe.root_module.linkSystemLibrary("dl", .{});
    b.installArtifact(bench_exe);
    // The subject `ouro-hardened`: the same driver linked with a hardened library, run as a sibling.
    const hard_cfg: Config = .{ .optimize = .ReleaseFast, .debug_level = 0, .hardened = true, .torture = false, .sanitize = .none };
    const hard_ch = configHeader(ctx, hard_cfg);
    const hard_exe = addExe(ctx, hard_cfg, hard_ch, addLib(ctx, hard_cfg, hard_ch, .static), "ouro-bench-hardened", &bench_sources);
    hard_exe.root_module.linkSystemLibrary("dl", .{});
    b.installArtifact(hard_exe);
    // The subject `ouro-so`: the driver linked with the same library built shared (libouro-bench.so,
    // found at bin/../lib), as a server links libouro.so.
    const bench_so = addLibNamed(ctx, bench_cfg, bench_ch, .dynamic, false, "ouro-bench");
    b.installArtifact(bench_so);
    const so_exe = addExe(ctx, bench_cfg, bench_ch, bench_so, "ouro-bench-so", &bench_sources);
    so_exe.root_module.linkSystemLibrary("dl", .{});
    so_exe.root_module.addRPathSpecial("$ORIGIN/../lib");
    b.installArtifact(so_exe);
    // The `real` suite's workloads, found by the driver at bin/../share/ouro-bench/real.
    b.installDirectory(.{ .source_dir = b.path("bench/real"), .install_dir = .prefix, .install_subdir = "share/ouro-bench/real" });
    const bench_run = b.addRunArtifact(bench_exe);
    bench_run.addArgs(&.{ "--json", b.getInstallPath(.prefix, "bench/results.json") });
    if (b.args) |args| bench_run.addArgs(args);
    bench_run.step.dependOn(b.getInstallStep());
    bench_run.has_side_effects = true;
    // The `real` suite's ratios as a PNG next to results.json (Debian's python3 and matplotlib); nothing
    // when the run had no `real` records.
    const chart_run = b.addSystemCommand(&.{"/usr/bin/python3"});
    chart_run.addFileArg(b.path("bench/real_chart.py"));
    chart_run.addArgs(&.{ b.getInstallPath(.prefix, "bench/results.json"), b.getInstallPath(.prefix, "bench/real.png") });
    chart_run.step.dependOn(&bench_run.step);
    chart_run.has_side_effects = true;
    b.step("bench", "Run the side-by-side benchmarks (writes zig-out/bench/results.json, and real.png for the real suite)").dependOn(&chart_run.step);

    // ---- real-tests: real programs pass on ouro's malloc (tests/real/, docs/bench.md) --------------
    // CPython's own regression tests without and with lib/libouro-malloc.so preloaded (the same results
    // or the step fails), then redis-server on it under redis-benchmark's default run. The library is
    // the one this build installs: hardened by default, `-Dhardened=false` tests the plain one. `-Dreal-short=true`: a
    // few modules and fewer requests (CI); test names after `--` replace CPython's list.
    const real_short = b.option(bool, "real-short", "real-tests: a few CPython test modules, 2 000 redis requests per test (CI)") orelse false;
    const malloc_so_path = b.getInstallPath(.lib, "libouro-malloc.so");
    const cpython_run = b.addSystemCommand(&.{"/usr/bin/python3"});
    cpython_run.addFileArg(b.path("tests/real/cpython_tests.py"));
    cpython_run.addArg(malloc_so_path);
    if (real_short) cpython_run.addArg("--short");
    if (b.args) |args| cpython_run.addArgs(args);
    cpython_run.step.dependOn(&b.addInstallArtifact(malloc_so, .{}).step);
    cpython_run.has_side_effects = true;
    const redis_run = b.addSystemCommand(&.{"bash"});
    redis_run.addFileArg(b.path("tests/real/redis_check.sh"));
    redis_run.addArg(malloc_so_path);
    if (real_short) redis_run.addArg("--short");
    redis_run.step.dependOn(&cpython_run.step); // one after the other: 2 cores
    redis_run.has_side_effects = true;
    b.step("real-tests", "CPython's regression tests and redis-benchmark's default run with lib/libouro-malloc.so preloaded").dependOn(&redis_run.step);

    // ---- asan: the same sources through Debian's clang with ASan + UBSan --------------------------
    const asan_step = b.step("asan", "Build the tests with Debian's clang -fsanitize=address,undefined and run them");
    const asan_cfg: Config = .{ .optimize = .Debug, .debug_level = @max(debug_level, 1), .hardened = true, .torture = torture, .sanitize = .none, .refcount = refcount };
    const asan_ch = configHeader(ctx, asan_cfg);
    const asan_bins = [_]struct { name: []const u8, files: []const []const u8, libs: []const []const u8, args: []const []const u8 }{
        .{ .name = "test_alloc", .files = &.{"tests/test_alloc.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_alloc_threads", .files = &.{"tests/test_alloc_threads.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_threads", .files = &.{"tests/test_threads.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_object", .files = &.{"tests/test_object.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_number", .files = &.{"tests/test_number.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_str", .files = &.{"tests/test_str.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_list", .files = &.{"tests/test_list.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_dict", .files = &.{"tests/test_dict.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_weakref", .files = &.{"tests/test_weakref.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_gc", .files = &.{"tests/test_gc.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_lifecycle", .files = &.{"tests/test_lifecycle.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_faults", .files = &.{"tests/test_faults.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_misuse", .files = &.{"tests/test_misuse.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "test_sanitizers", .files = &.{"tests/test_sanitizers.c"}, .libs = &.{"-lcmocka"}, .args = &.{} },
        .{ .name = "ouro-stress", .files = &stress_sources, .libs = &.{}, .args = &.{ "--duration", "1", "--short" } },
    };
    for (asan_bins) |bin| {
        const out = clangExe(b, asan_ch, &asan_flags, bin.name, bin.files, bin.libs);
        const run = std.Build.Step.Run.create(b, b.fmt("run asan {s}", .{bin.name}));
        run.addFileArg(out);
        run.addArgs(bin.args);
        run.setEnvironmentVariable("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1");
        run.setEnvironmentVariable("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
        asan_step.dependOn(&run.step);
    }

    // ---- memcheck: the unit tests under Valgrind's memcheck, ouro's blocks described to it ---------
    // -Dvalgrind=true whatever was asked (the client requests of alloc/sanitize.h), the chosen mode and
    // options otherwise. Zero errors or the step fails; tests/valgrind.supp holds the suppressions, each
    // with its reason (liburcu's internals only). docs/building.md, "Valgrind".
    const mc_step = b.step("memcheck", "Run the unit tests under Valgrind's memcheck (-Dvalgrind=true)");
    var mc_cfg = cfg;
    mc_cfg.valgrind = true;
    const mc_ch = configHeader(ctx, mc_cfg);
    const mc_lib = addLib(ctx, mc_cfg, mc_ch, .static);
    for (test_sources) |src| {
        const name = std.fs.path.stem(src);
        const exe = addExe(ctx, mc_cfg, mc_ch, mc_lib, b.fmt("{s}-memcheck", .{name}), &.{ src, "threads/tsan_defaults.c" });
        exe.root_module.linkSystemLibrary("cmocka", .{});
        const run = b.addSystemCommand(&.{ "valgrind", "--tool=memcheck", "-q", "--error-exitcode=1", "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=none", "--fair-sched=yes", "--num-callers=24" });
        run.addPrefixedFileArg("--suppressions=", b.path("tests/valgrind.supp"));
        run.addArtifactArg(exe);
        run.setName(b.fmt("memcheck {s}", .{name}));
        run.setEnvironmentVariable("OURO_MEMCHECK", "1");
        mc_step.dependOn(&run.step);
    }

    // ---- fuzz: the API fuzzer, libFuzzer + the asan step's clang, flags and configuration ----------
    // New inputs go to zig-out/fuzz/corpus (tests/fuzz/corpus seeds it, read-only), crashes to
    // zig-out/fuzz/crashes. Arguments after `--` go to libFuzzer. docs/building.md, "Fuzzing".
    const fuzz_secs = b.option(u32, "fuzz-seconds", "Seconds the fuzz step fuzzes for (default 60)") orelse 60;
    const fuzz_skip = b.option([]const u8, "fuzz-skip", "Op variants the fuzzer makes no-ops: OURO_FUZZ_SKIP (tests/fuzz/fuzz_api.c)") orelse "";
    const fuzz_exe = clangExe(b, asan_ch, &(asan_flags ++ [_][]const u8{"-fsanitize=fuzzer"}), "ouro-fuzz", &.{"tests/fuzz/fuzz_api.c"}, &.{});
    const fuzz_run = b.addSystemCommand(&.{ "sh", "-c",
        \\out=$1 exe=$2 seeds=$3; shift 3
        \\mkdir -p "$out/corpus" "$out/crashes" && exec "$exe" -artifact_prefix="$out/crashes/" "$@" "$out/corpus" "$seeds"
    , "fuzz", b.getInstallPath(.prefix, "fuzz") });
    fuzz_run.addFileArg(fuzz_exe);
    fuzz_run.addDirectoryArg(b.path("tests/fuzz/corpus"));
    fuzz_run.addArgs(&.{ b.fmt("-max_total_time={d}", .{fuzz_secs}), "-timeout=60", "-max_len=1024", "-print_final_stats=1" });
    if (b.args) |args| fuzz_run.addArgs(args);
    fuzz_run.setEnvironmentVariable("ASAN_OPTIONS", "detect_leaks=1");
    fuzz_run.setEnvironmentVariable("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    if (fuzz_skip.len > 0) fuzz_run.setEnvironmentVariable("OURO_FUZZ_SKIP", fuzz_skip);
    fuzz_run.has_side_effects = true;
    b.step("fuzz", "Fuzz the API for -Dfuzz-seconds (libFuzzer, ASan + UBSan; Debian's clang)").dependOn(&fuzz_run.step);

    // ---- fuzz-cov: line coverage of the library by a corpus (llvm-cov), per file and module folder -
    // Default corpora: tests/fuzz/corpus and zig-out/fuzz/corpus; arguments after `--` replace them.
    const cov_exe = clangExe(b, asan_ch, &.{ "-g", "-O0", "-fprofile-instr-generate", "-fcoverage-mapping" }, "ouro-fuzz-cov", &.{ "tests/fuzz/replay.c", "tests/fuzz/fuzz_api.c" }, &.{"-lm"}); // -O0: trunc() is a call
    const cov_run = b.addSystemCommand(&.{"sh"});
    cov_run.addFileArg(b.path("tests/fuzz/coverage.sh"));
    cov_run.addFileArg(cov_exe);
    cov_run.addArg(b.getInstallPath(.prefix, "fuzz-cov"));
    if (b.args) |args| cov_run.addArgs(args) else {
        cov_run.addDirectoryArg(b.path("tests/fuzz/corpus"));
        cov_run.addArg(b.getInstallPath(.prefix, "fuzz/corpus"));
    }
    if (fuzz_skip.len > 0) cov_run.setEnvironmentVariable("OURO_FUZZ_SKIP", fuzz_skip); // as the corpus was made
    cov_run.has_side_effects = true;
    b.step("fuzz-cov", "Replay the fuzz corpora with a coverage build and print llvm-cov's report").dependOn(&cov_run.step);

    // ---- model: the concurrency protocols in Promela, checked exhaustively by spin (Debian's) --------
    // model/check.sh generates and compiles each verifier in a temporary directory and prints a table;
    // `./zigw build model -- stw` checks one model. docs/threads.md, "Model checking".
    const model_run = b.addSystemCommand(&.{"bash"});
    model_run.addFileArg(b.path("model/check.sh"));
    if (b.args) |args| model_run.addArgs(args);
    model_run.has_side_effects = true;
    b.step("model", "Model-check the stop handshake, remote frees and biased refcounting with spin (2 and 3 threads)").dependOn(&model_run.step);
}
