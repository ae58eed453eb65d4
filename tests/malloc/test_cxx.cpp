// tests/malloc/test_cxx.cpp — C++'s operator new and delete on libouro-malloc, run with
// LD_PRELOAD=zig-out/lib/libouro-malloc.so. Built by the system's g++ against libstdc++ (a program linked
// with its own C++ runtime's operators statically, as `zig c++` links libc++, would keep those). Every
// form: plain, array, nothrow, sized delete, std::align_val_t; std::bad_alloc thrown through the C
// frames of malloc/cxx.c and caught here; the new-handler called before it. Prints "ok" and exits 0.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <malloc.h>
#include <memory>
#include <new>
#include <string>
#include <vector>

static int (*owns)(const void *);
static int failures;

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            std::fprintf(stderr, "test_cxx:%d: check failed: %s\n", __LINE__, #c); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

struct alignas(64) Line { char b[64]; };
struct alignas(4096) Page { char b[100]; };
struct alignas(1 << 20) Huge { char b[10]; };

static int handler_calls;
static void handler() {
    handler_calls++;
    std::set_new_handler(nullptr); // the next failure throws
}

static volatile std::size_t too_much = SIZE_MAX / 2;

int main() {
    owns = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "ouro_malloc_owns"));
    if (!owns) {
        std::fprintf(stderr, "test_cxx: libouro-malloc is not loaded\n");
        return 1;
    }
    // plain and array forms, sized delete (C++14's, which g++ calls for complete types)
    int *i = new int(42);
    CHECK(owns(i) && *i == 42);
    delete i;
    char *a = new char[1000];
    CHECK(owns(a));
    delete[] a;
    auto *v = new std::vector<std::string>(100, std::string(50, 'x'));
    CHECK(owns(v) && owns(v->data()) && owns((*v)[7].data()));
    delete v;
    ::operator delete(::operator new(24), 24);
    ::operator delete[](::operator new[](5000), 5000);
    // nothrow
    int *n = new (std::nothrow) int[10];
    CHECK(n && owns(n));
    delete[] n;
    CHECK(::operator new(too_much, std::nothrow) == nullptr);
    CHECK(::operator new[](too_much, std::nothrow) == nullptr);
    // aligned (std::align_val_t: C++17 picks these for over-aligned types)
    Line *l = new Line;
    CHECK(owns(l) && reinterpret_cast<std::uintptr_t>(l) % 64 == 0);
    delete l;
    Page *pg = new Page[3];
    CHECK(owns(pg) && reinterpret_cast<std::uintptr_t>(pg) % 4096 == 0);
    delete[] pg;
    Huge *h = new Huge;
    CHECK(owns(h) && reinterpret_cast<std::uintptr_t>(h) % (1 << 20) == 0);
    delete h;
    void *al = ::operator new(100, std::align_val_t(256), std::nothrow);
    CHECK(al && reinterpret_cast<std::uintptr_t>(al) % 256 == 0 && malloc_usable_size(al) >= 100);
    ::operator delete(al, std::align_val_t(256), std::nothrow);
    al = ::operator new[](100, std::align_val_t(32768));
    CHECK(reinterpret_cast<std::uintptr_t>(al) % 32768 == 0);
    ::operator delete[](al, 100, std::align_val_t(32768));
    auto up = std::make_unique<Line[]>(5);
    CHECK(owns(up.get()));
    // std::bad_alloc through the shim's C frames
    bool caught = false;
    try {
        char *x = new char[too_much];
        x[0] = 1;
    } catch (const std::bad_alloc &e) {
        caught = std::strlen(e.what()) > 0;
    }
    CHECK(caught);
    caught = false;
    try {
        void *x = ::operator new(too_much, std::align_val_t(64));
        ::operator delete(x);
    } catch (std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught);
    // the new-handler runs before the throw
    std::set_new_handler(handler);
    caught = false;
    try {
        void *x = ::operator new(too_much);
        ::operator delete(x);
    } catch (std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught && handler_calls == 1);
    if (failures) return 1;
    std::puts("ok");
    return 0;
}
