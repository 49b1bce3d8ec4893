# Included by the rosidl packages under src/ when pip (scikit-build-core) builds them: the ROS 2
# prefix is then the venv holding the ros-* wheels, not a sourced workspace. Find it from Python,
# expose it the way a sourced setup would, and (after find_package of the dependencies) point the
# wheels' Python generator targets at this interpreter's headers where the include folders they
# name (those of the machine that built the wheels) do not exist here.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c
    "import ament_package, pathlib; print(pathlib.Path(ament_package.__file__).resolve().parents[4])"
  OUTPUT_VARIABLE DFOCUS_ROS_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
message(STATUS "ROS 2 prefix from the Python environment: ${DFOCUS_ROS_PREFIX}")
list(PREPEND CMAKE_PREFIX_PATH "${DFOCUS_ROS_PREFIX}")
set(ENV{AMENT_PREFIX_PATH} "${DFOCUS_ROS_PREFIX}")

# Call after find_package(...) of the interface dependencies, with their names.
function(dfocus_fix_python_generator_includes)
  foreach(dep IN LISTS ARGN)
    if(TARGET ${dep}::${dep}__rosidl_generator_py)
      get_target_property(_dirs ${dep}::${dep}__rosidl_generator_py INTERFACE_INCLUDE_DIRECTORIES)
      foreach(_dir IN LISTS _dirs)
        if(NOT EXISTS "${_dir}")
          set_target_properties(${dep}::${dep}__rosidl_generator_py PROPERTIES
            INTERFACE_INCLUDE_DIRECTORIES "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
          break()
        endif()
      endforeach()
    endif()
  endforeach()
endfunction()
