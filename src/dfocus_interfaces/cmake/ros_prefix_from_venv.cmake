# Shared by the rosidl packages under src/ (dfocus_interfaces, and tf2_msgs, which pip builds from
# this checkout). Built by pip (scikit-build-core), the ROS 2 prefix is the venv holding the ros-*
# wheels, not a sourced workspace: find it from Python and expose it the way a sourced setup would.
if(SKBUILD)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import ament_package, pathlib; print(pathlib.Path(ament_package.__file__).resolve().parents[4])"
    OUTPUT_VARIABLE DFOCUS_ROS_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  message(STATUS "ROS 2 prefix from the Python environment: ${DFOCUS_ROS_PREFIX}")
  list(PREPEND CMAKE_PREFIX_PATH "${DFOCUS_ROS_PREFIX}")
  set(ENV{AMENT_PREFIX_PATH} "${DFOCUS_ROS_PREFIX}")
endif()

# Call after find_package(...) of the interface dependencies, with their names. The ros-* wheels'
# exported Python generator targets name the include folders of the machine that built them; where
# those do not exist here (pip or colcon on the wheels), point them at this interpreter's headers.
# A normal ROS 2 install has valid paths and is left untouched.
function(dfocus_fix_python_generator_includes)
  foreach(dep IN LISTS ARGN)
    if(TARGET ${dep}::${dep}__rosidl_generator_py)
      get_target_property(_dirs ${dep}::${dep}__rosidl_generator_py INTERFACE_INCLUDE_DIRECTORIES)
      foreach(_dir IN LISTS _dirs)
        if(NOT EXISTS "${_dir}")
          find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
          set_target_properties(${dep}::${dep}__rosidl_generator_py PROPERTIES
            INTERFACE_INCLUDE_DIRECTORIES "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
          break()
        endif()
      endforeach()
    endif()
  endforeach()
endfunction()
