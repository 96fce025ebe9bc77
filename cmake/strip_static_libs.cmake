# CPack pre-build script (CPACK_PRE_BUILD_SCRIPTS): drops the debug info of
# the static libraries staged for the package. CPACK_STRIP_FILES strips the
# executables only, and a RelWithDebInfo liblattice_registry.a is ~90 MB of
# mostly DWARF.
file(GLOB_RECURSE archives "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*.a")
foreach(archive IN LISTS archives)
  execute_process(COMMAND strip --strip-debug "${archive}" RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "strip --strip-debug ${archive} failed")
  endif()
endforeach()
