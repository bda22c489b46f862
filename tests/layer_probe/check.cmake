# check.cmake — the ctest layer_rule (cmake -P): configures a scratch tree with -DTANDEM_LAYER_PROBE=ON, whose kernels
# layer calls tandem_generate, and requires tandem_layer_check_kernels to fail naming that symbol.
# Arguments (-D): SOURCE_DIR, BINARY_DIR (the scratch tree), C_COMPILER, GENERATOR.
foreach(v SOURCE_DIR BINARY_DIR C_COMPILER GENERATOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check.cmake: -D${v}=... is required")
  endif()
endforeach()

# Debug: nothing is optimized, so the scratch build of base + kernels is quick.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR} -G ${GENERATOR}
                        -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Debug -DTANDEM_LAYER_PROBE=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "layer_rule: configuring the probe tree failed:\n${out}")
endif()

# The probe and the layer below must build: the failure that follows is then the link check's, nothing else.
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} --target tandem_kernels tandem_layer_check_base
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "layer_rule: the probe's objects or tandem_layer_check_base failed to build:\n${out}")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} --target tandem_layer_check_kernels
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "layer_rule: a kernels object calling tandem_generate linked: the layer check does not bite")
endif()
if(NOT out MATCHES "tandem_generate" OR NOT out MATCHES "layer rule: src/kernels may call only src/base,")
  message(FATAL_ERROR "layer_rule: the kernels check failed, but not naming tandem_generate and the rule:\n${out}")
endif()
message(STATUS "layer_rule: the kernels check refuses the call to tandem_generate, as it should")
