#!/bin/sh
# install.sh — install the build into a temporary prefix (as `make install PREFIX=...` does)
# and check what a user of the installed copy gets.
#
# Usage: sh tests/cli/install.sh BUILD_DIR SOURCE_DIR SANITIZE CASE
#
# Cases: files_and_command (everything is where it belongs, the installed postbox command
# runs, a program links with plain cc flags), pkg_config_c, pkg_config_cxx (a program built
# with pkg-config's flags), cmake_package_c, cmake_package_cxx (find_package(postbox)). A
# case whose tool (pkg-config, a C++ compiler) is missing is skipped with exit status 77 and
# a one-line reason naming the Debian package; so is every case in a sanitizer build, whose
# library needs the sanitizer runtime loaded first. The prefix is removed on exit.
#
# pkg_config_as_documented follows docs/cli.md as a newcomer pastes it: it sets only what
# the install printed to paste (PKG_CONFIG_PATH for a prefix pkg-config does not search), builds
# with exactly `cc app.c $(pkg-config --cflags --libs postbox)` and runs the program with no
# LD_LIBRARY_PATH: the rpath in postbox.pc must find the library.
set -u
[ $# -eq 4 ] || { echo "usage: sh install.sh BUILD_DIR SOURCE_DIR SANITIZE CASE" >&2; exit 2; }
build=$1
src=$2
sanitize=$3
case_name=$4
[ -z "$sanitize" ] || { echo "skipped: sanitizer build ($sanitize)"; exit 77; }

cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || cc=gcc
cxx=${CXX:-}
[ -n "$cxx" ] || for c in c++ g++ clang++; do
    command -v $c >/dev/null 2>&1 && { cxx=$c; break; }
done

fail() {
    echo "FAIL ($case_name): $*" >&2
    exit 1
}

skip_unless() {
    command -v "$1" >/dev/null 2>&1 || { echo "skipped: $1 not installed (Debian: apt-get install $2)"; exit 77; }
}
need_cxx() {
    [ -n "$cxx" ] || { echo "skipped: no C++ compiler (Debian: apt-get install g++)"; exit 77; }
}
case $case_name in
pkg_config_c | pkg_config_as_documented) skip_unless pkg-config pkgconf ;;
pkg_config_cxx) skip_unless pkg-config pkgconf; need_cxx ;;
cmake_package_cxx) need_cxx ;;
esac

T=$(mktemp -d "${TMPDIR:-/tmp}/postbox-install.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
prefix=$T/prefix
env -u PKG_CONFIG_PATH cmake --install "$build" --prefix "$prefix" >"$T/install.log" 2>&1 ||
    fail "cmake --install failed: $(cat "$T/install.log")"
libdir=$(dirname "$(find "$prefix" -name 'libpostbox.so' | head -n 1)")
[ -d "$libdir" ] || fail "no libpostbox.so installed"

run_program() {
    out=$("$1") || fail "$1 failed"
    case $out in "installed postbox "*" works") ;; *) fail "$1 printed: $out" ;; esac
}

case $case_name in
files_and_command)
    for f in bin/postbox include/postbox.h share/man/man1/postbox.1 \
             share/bash-completion/completions/postbox; do
        [ -f "$prefix/$f" ] || fail "$f not installed"
    done
    for fn in pbx_options_init pbx_strerror pbx_version pbx_open pbx_open_private pbx_close \
              pbx_remove pbx_unlink pbx_send pbx_timedsend pbx_recv pbx_timedrecv pbx_stat \
              pbx_claim pbx_timedclaim pbx_ack pbx_release pbx_notify pbx_fd pbx_peers \
              pbx_loan pbx_commit pbx_cancel pbx_recv_loan pbx_return pbx_loan_piece \
              pbx_sendv pbx_timedsendv pbx_recvv pbx_timedrecvv; do
        [ -f "$prefix/share/man/man3/$fn.3" ] || fail "no man page for $fn"
    done
    for f in libpostbox.a libpostbox.so.0 pkgconfig/postbox.pc cmake/postbox/postboxConfig.cmake \
             cmake/postbox/postboxConfigVersion.cmake cmake/postbox/postboxTargets.cmake; do
        [ -e "$libdir/$f" ] || fail "$f not installed in $libdir"
    done
    grep -qx "prefix=$prefix" "$libdir/pkgconfig/postbox.pc" || fail "postbox.pc names another prefix"
    # The installed command finds the installed library by itself (relative RPATH).
    v=$(env -u LD_LIBRARY_PATH "$prefix/bin/postbox" --version) || fail "installed postbox does not run"
    case $v in "postbox "*) ;; *) fail "postbox --version: $v" ;; esac
    POSTBOX_DIR=$T
    export POSTBOX_DIR
    "$prefix/bin/postbox" create q && "$prefix/bin/postbox" send q hi &&
        [ "$("$prefix/bin/postbox" recv q)" = hi ] && "$prefix/bin/postbox" rm q ||
        fail "installed postbox does not pass a message"
    # Plain compiler flags, shared and static.
    "$cc" -o "$T/user" "$src/tests/cli/installed_user.c" -I"$prefix/include" -L"$libdir" \
        -lpostbox -Wl,-rpath,"$libdir" || fail "cannot build against the installed copy"
    run_program "$T/user"
    "$cc" -o "$T/user_static" "$src/tests/cli/installed_user.c" -I"$prefix/include" \
        "$libdir/libpostbox.a" -pthread || fail "cannot link the installed static library"
    run_program "$T/user_static"
    ;;
pkg_config_c | pkg_config_cxx)
    PKG_CONFIG_PATH=$libdir/pkgconfig
    export PKG_CONFIG_PATH
    flags=$(pkg-config --cflags --libs postbox) || fail "pkg-config does not find postbox"
    [ "$(pkg-config --modversion postbox)" = "$(env -u LD_LIBRARY_PATH "$prefix/bin/postbox" --version | cut -d' ' -f2)" ] ||
        fail "pkg-config version differs from the command's"
    if [ $case_name = pkg_config_c ]; then
        # shellcheck disable=SC2086
        "$cc" -std=c99 -pedantic-errors -Wall -Werror -o "$T/user" \
            "$src/tests/cli/installed_user.c" $flags || fail "cc with pkg-config flags"
    else
        cp "$src/tests/cli/installed_user.c" "$T/user.cpp"
        # shellcheck disable=SC2086
        "$cxx" -pedantic-errors -Wall -Werror -o "$T/user" "$T/user.cpp" $flags ||
            fail "c++ with pkg-config flags"
    fi
    run_program "$T/user"
    ;;
pkg_config_as_documented)
    # Only what the install told us to paste, nothing else.
    unset PKG_CONFIG_PATH LD_LIBRARY_PATH
    paste=$(grep '^ *export PKG_CONFIG_PATH=' "$T/install.log") ||
        fail "the install printed no PKG_CONFIG_PATH line for $prefix: $(cat "$T/install.log")"
    eval "$paste"
    cp "$src/tests/cli/installed_user.c" "$T/app.c"
    (cd "$T" && "$cc" app.c $(pkg-config --cflags --libs postbox)) ||
        fail "cc app.c \$(pkg-config --cflags --libs postbox) failed"
    run_program "$T/a.out"
    ;;
cmake_package_c | cmake_package_cxx)
    mkdir -p "$T/proj"
    if [ $case_name = cmake_package_c ]; then
        lang=C
        cp "$src/tests/cli/installed_user.c" "$T/proj/user.c"
        srcfile=user.c
    else
        lang=CXX
        cp "$src/tests/cli/installed_user.c" "$T/proj/user.cpp"
        srcfile=user.cpp
    fi
    cat >"$T/proj/CMakeLists.txt" <<EOC
cmake_minimum_required(VERSION 3.16)
project(user LANGUAGES C $lang)
find_package(postbox 0.1 REQUIRED)
add_executable(user $srcfile)
target_link_libraries(user PRIVATE postbox::postbox)
add_executable(user_static $srcfile)
target_link_libraries(user_static PRIVATE postbox::postbox_static)
EOC
    cxxflag=
    [ $lang = CXX ] && cxxflag=-DCMAKE_CXX_COMPILER=$cxx
    cmake -S "$T/proj" -B "$T/proj/build" -DCMAKE_PREFIX_PATH="$prefix" $cxxflag \
        >"$T/cmake.log" 2>&1 || fail "find_package(postbox) failed: $(tail -n 20 "$T/cmake.log")"
    cmake --build "$T/proj/build" >"$T/build.log" 2>&1 || fail "build failed: $(tail -n 20 "$T/build.log")"
    run_program "$T/proj/build/user"
    run_program "$T/proj/build/user_static"
    ;;
*)
    echo "install.sh: no case $case_name" >&2
    exit 2
    ;;
esac
echo "ok: $case_name"
