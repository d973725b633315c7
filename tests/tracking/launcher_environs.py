"""Launcher environments for the launcher tests: what torchrun, srun and mpirun set.

Shared by test_launcher.py (ranks) and test_launcher_metadata.py (job metadata).
"""

LAUNCHER_VARIABLE_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "MPI_", "TORCHELASTIC_", "GROUP_")
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "ROLE_NAME")
"""What :func:`greenai.tracking.launcher.rank_info` could read: cleared to test without them."""

# What torchrun 2.13 gave rank 1 of `torchrun --standalone --nproc-per-node 2` (captured).
TORCHRUN = {
    "GROUP_RANK": "0",
    "GROUP_WORLD_SIZE": "1",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "localhost",
    "MASTER_PORT": "38717",
    "OMP_NUM_THREADS": "1",
    "RANK": "1",
    "ROLE_NAME": "default",
    "ROLE_RANK": "1",
    "ROLE_WORLD_SIZE": "2",
    "TORCHELASTIC_MAX_RESTARTS": "0",
    "TORCHELASTIC_RESTART_COUNT": "0",
    "TORCHELASTIC_RUN_ID": "c2ebeded-596d-466a-a6fa-84938eb00a8f",
    "TORCHELASTIC_USE_AGENT_STORE": "True",
    "WORLD_SIZE": "2",
    "HOME": "/home/ada",
}

# Rank 6 of a two-node torchrun (--nnodes 2 --nproc-per-node 4), second node.
TORCHRUN_NODE_1 = TORCHRUN | {
    "GROUP_RANK": "1",
    "GROUP_WORLD_SIZE": "2",
    "LOCAL_RANK": "2",
    "LOCAL_WORLD_SIZE": "4",
    "MASTER_ADDR": "gpu-001",
    "MASTER_PORT": "29500",
    "RANK": "6",
    "ROLE_RANK": "6",
    "ROLE_WORLD_SIZE": "8",
    "TORCHELASTIC_RESTART_COUNT": "1",
    "TORCHELASTIC_MAX_RESTARTS": "3",
    "TORCHELASTIC_RUN_ID": "4711",
    "WORLD_SIZE": "8",
}

# Task 5 of `srun --nodes 2 --ntasks-per-node 4` in job 4711: the second node's second task.
SRUN = {
    "SLURM_CLUSTER_NAME": "ada",
    "SLURM_CPUS_ON_NODE": "32",
    "SLURM_GPUS_ON_NODE": "4",
    "SLURM_GTIDS": "4,5,6,7",
    "SLURM_JOB_ACCOUNT": "green",
    "SLURM_JOB_GPUS": "0,1,2,3",
    "SLURM_JOB_ID": "4711",
    "SLURM_JOBID": "4711",
    "SLURM_JOB_NAME": "finetune",
    "SLURM_JOB_NODELIST": "gpu-[001-002]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_PARTITION": "gpu",
    "SLURM_LOCALID": "1",
    "SLURM_NNODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_NODELIST": "gpu-[001-002]",
    "SLURM_NPROCS": "8",
    "SLURM_NTASKS": "8",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_PROCID": "5",
    "SLURM_STEP_GPUS": "0,1,2,3",
    "SLURM_STEP_ID": "0",
    "SLURM_STEP_NODELIST": "gpu-[001-002]",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
    "SLURM_SUBMIT_HOST": "login1",
    "SLURM_TASKS_PER_NODE": "4(x2)",
    "SLURMD_NODENAME": "gpu-002",
}

# An sbatch script's own shell (or salloc's): an allocation, no task of a step.
ALLOCATION = {
    "SLURM_JOB_ID": "4711",
    "SLURM_JOB_NAME": "finetune",
    "SLURM_JOB_NODELIST": "gpu-001",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NNODES": "1",
    "SLURM_NODEID": "0",
    "SLURM_TASKS_PER_NODE": "1",
    "SLURM_GPUS_ON_NODE": "4",
}

# `srun --ntasks-per-node 1 torchrun --nnodes 2 --nproc-per-node 4 ...`: srun starts one
# torchrun per node, torchrun its four workers, which inherit the srun task's variables.
TORCHRUN_IN_SLURM = (
    SRUN
    | {
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "1",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
        "SLURM_TASKS_PER_NODE": "1(x2)",
    }
    | TORCHRUN_NODE_1
)

# An srun task as posted from a real cluster: --ntasks-per-node 4 was asked for, yet each
# of the 4 nodes got one task (SLURM_TASKS_PER_NODE), the layout that counts.
SRUN_ASKED_VS_PLACED = {
    "SLURM_JOB_ID": "200505",
    "SLURM_JOB_NODELIST": "gnode[10,20,25,37]",
    "SLURM_NNODES": "4",
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_TASKS_PER_NODE": "1(x4)",
    "SLURM_NODEID": "0",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}

# Rank 3 of `mpirun -np 4 --npernode 2` (Open MPI).
OPEN_MPI = {
    "OMPI_COMM_WORLD_RANK": "3",
    "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    "OMPI_COMM_WORLD_NODE_RANK": "1",
    "OMPI_UNIVERSE_SIZE": "4",
}

# Rank 2 of `mpiexec -n 4 -ppn 2` (MPICH/Intel MPI's Hydra).
HYDRA = {
    "PMI_RANK": "2",
    "PMI_SIZE": "4",
    "MPI_LOCALRANKID": "0",
    "MPI_LOCALNRANKS": "2",
    "PMI_FD": "7",
}
