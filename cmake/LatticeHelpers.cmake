# Build helpers shared by every layer: warnings, sanitizers, tests, benches.

# Strict warnings for our own code. Third-party headers come in as SYSTEM
# includes through their imported targets, so they do not trip these.
function(lattice_set_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
    -Wcast-align -Wimplicit-fallthrough -Wconversion -Wsign-conversion
    $<$<BOOL:${LATTICE_WERROR}>:-Werror>)
endfunction()

# Sanitizers apply to everything we compile, so set them globally.
if(LATTICE_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
elseif(LATTICE_SANITIZE STREQUAL "thread")
  # -Wno-tsan: gcc 12 warns that TSan does not model atomic_thread_fence,
  # which Asio uses internally; with -Werror that would stop the build.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(NOT LATTICE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "LATTICE_SANITIZE must be '', 'address' or 'thread'")
endif()
# Whether a sanitizer runtime is linked in (a fuzzing build has ASan+UBSan):
# tests that replace operator new, or install what they built, are left out.
if(LATTICE_SANITIZE STREQUAL "" AND NOT LATTICE_FUZZ)
  set(LATTICE_SANITIZED OFF)
else()
  set(LATTICE_SANITIZED ON)
endif()
if(NOT LATTICE_TEST_SET MATCHES "^(all|threads)$")
  message(FATAL_ERROR "LATTICE_TEST_SET must be 'all' or 'threads'")
endif()

# lattice_library(name SOURCES ...): a layer, with its own public include/ only,
# so a layer cannot include headers of a layer above it.
# INTERNAL_HEADERS: headers under include/ that the build tree's tests and
# benchmarks use but that are not part of the installed API.
function(lattice_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;INTERNAL_HEADERS" ${ARGN})
  add_library(lattice_${name} ${ARG_SOURCES})
  add_library(lattice::${name} ALIAS lattice_${name})
  set_target_properties(lattice_${name} PROPERTIES EXPORT_NAME ${name}
                        POSITION_INDEPENDENT_CODE ON)
  target_include_directories(lattice_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(lattice_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_features(lattice_${name} PUBLIC cxx_std_20)
  lattice_set_warnings(lattice_${name})
  install(TARGETS lattice_${name} EXPORT latticeTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  set(excluded)
  foreach(header ${ARG_INTERNAL_HEADERS})
    list(APPEND excluded PATTERN ${header} EXCLUDE)
  endforeach()
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} ${excluded})
endfunction()

# lattice_test(name LABEL layer SOURCES ... LIBS ...): one Catch2 executable per
# layer. Test cases tagged [slow] get the extra CTest label `slow`, so sanitizer
# jobs can run `ctest -LE slow`.
# THREADS marks an executable whose tests start threads (a replica, the Asio
# driver): the only ones a LATTICE_TEST_SET=threads build (ThreadSanitizer's,
# scripts/test.sh) compiles, since single-threaded code cannot race.
function(lattice_test name)
  cmake_parse_arguments(ARG "THREADS" "LABEL" "SOURCES;LIBS" ${ARGN})
  if(LATTICE_TEST_SET STREQUAL "threads" AND NOT ARG_THREADS)
    return()
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE lattice_test_support ${ARG_LIBS})
  lattice_set_warnings(${name})
  # --warn NoTests: a CTest entry whose name matches no test case fails
  # instead of passing having run nothing (a ';' in a test's name used to
  # split it into two entries that each ran nothing).
  catch_discover_tests(${name} TEST_SPEC "~[slow]~[.]" EXTRA_ARGS --warn NoTests
    PROPERTIES LABELS "${ARG_LABEL}" TIMEOUT 600)
  catch_discover_tests(${name} TEST_SPEC "[slow]" TEST_LIST ${name}_SLOW_TESTS EXTRA_ARGS --warn NoTests
    PROPERTIES TIMEOUT 1200)
  # Tests tagged [slow] get the labels "<layer>;slow". catch_discover_tests
  # writes its PROPERTIES unquoted, so a list would split into two
  # properties; a CTest include file that runs after discovery sets them.
  set(labels_file "${CMAKE_CURRENT_BINARY_DIR}/${name}_slow_labels.cmake")
  file(WRITE "${labels_file}"
    "foreach(t IN LISTS ${name}_SLOW_TESTS)\n"
    "  set_tests_properties(\"\${t}\" PROPERTIES LABELS \"${ARG_LABEL};slow\")\n"
    "endforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${labels_file}")
endfunction()

# lattice_bench(name SOURCES ...): a Google Benchmark executable. Run it with
# --benchmark_format=json for machine-readable output.
function(lattice_bench name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE benchmark::benchmark ${ARG_LIBS})
  lattice_set_warnings(${name})
endfunction()
