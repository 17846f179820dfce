# Shared build settings for C2-Concierge targets.

# Warnings as errors on our own code only (third-party headers are SYSTEM).
function(concierge_target_options target)
  # -Wno-restrict: GCC 12 reports false positives inside libstdc++ for
  # "literal" + std::string at -O2 (GCC bug 105329).
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wno-missing-field-initializers -Wno-restrict)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
endfunction()

# concierge_library(NAME name SOURCES ... DEPS ...)
function(concierge_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_library(${ARG_NAME} STATIC ${ARG_SOURCES})
  concierge_target_options(${ARG_NAME})
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS})
endfunction()

# concierge_test(NAME name SOURCES ... DEPS ... [ONE_PROCESS] [LABELS ...]): a
# GoogleTest binary whose cases are discovered when ctest runs (not at build
# time, to keep builds fast). ONE_PROCESS registers the whole binary as one
# ctest test instead: for binaries with costly shared set-up, such as the
# PostgreSQL cluster each PostgreSQL test binary starts once for all its cases.
function(concierge_test)
  if(NOT CONCIERGE_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "ONE_PROCESS" "NAME" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  concierge_target_options(${ARG_NAME})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} concierge_testing GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  set(env "CONCIERGE_SOURCE_DIR=${PROJECT_SOURCE_DIR};CONCIERGE_BINARY_DIR=${PROJECT_BINARY_DIR}")
  if(ARG_ONE_PROCESS)
    add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
    set_tests_properties(${ARG_NAME} PROPERTIES ENVIRONMENT "${env}" TIMEOUT 600)
    if(ARG_LABELS)
      set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
    endif()
  else()
    gtest_discover_tests(${ARG_NAME} DISCOVERY_MODE PRE_TEST PROPERTIES ENVIRONMENT "${env}")
  endif()
endfunction()

