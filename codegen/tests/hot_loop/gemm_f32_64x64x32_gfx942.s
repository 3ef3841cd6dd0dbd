	.amdgcn_target "amdgcn-amd-amdhsa--gfx942"
	.amdhsa_code_object_version 5
	.text
	.globl	gemm
	.p2align	8
	.type	gemm,@function
gemm:
	s_load_dwordx4 s[8:11], s[0:1], 0x8
	v_bfe_u32 v1, v0, 4, 2
	v_lshrrev_b32_e32 v3, 7, v0
	v_bfe_u32 v2, v0, 6, 1
	v_and_b32_e32 v18, 15, v0
	s_waitcnt lgkmcnt(0)
	s_ashr_i32 s4, s9, 31
	s_lshr_b32 s4, s4, 27
	s_add_i32 s4, s9, s4
	s_ashr_i32 s5, s4, 5
	s_andn2_b32 s4, s4, 31
	s_sub_i32 s4, s9, s4
	s_add_i32 s4, s4, 31
	s_lshr_b32 s4, s4, 5
	s_add_i32 s16, s4, s5
	v_lshlrev_b32_e32 v19, 2, v1
	s_cmp_gt_i32 s16, 0
	v_lshlrev_b32_e32 v23, 5, v3
	v_lshlrev_b32_e32 v22, 5, v2
	s_cbranch_scc1 .LBB0_2
	v_lshlrev_b32_e32 v30, 5, v3
	s_lshl_b32 s23, s2, 6
	v_lshlrev_b32_e32 v31, 5, v2
	s_mov_b64 s[4:5], 0
	s_branch .LBB0_3
.LBB0_2:
	s_mov_b64 s[4:5], -1
.LBB0_3:
	v_or_b32_e32 v25, 16, v19
	v_or_b32_e32 v28, 16, v18
	v_or_b32_e32 v29, 1, v19
	v_or_b32_e32 v21, 2, v19
	v_or_b32_e32 v20, 3, v19
	v_or_b32_e32 v24, 17, v19
	v_or_b32_e32 v27, 18, v19
	v_or_b32_e32 v26, 19, v19
	s_lshl_b32 s22, s3, 6
	s_andn2_b64 vcc, exec, s[4:5]
	v_mov_b32_e32 v5, 0
	v_mov_b32_e32 v4, 0
	v_mov_b32_e32 v3, 0
	v_mov_b32_e32 v2, 0
	v_mov_b32_e32 v9, 0
	v_mov_b32_e32 v8, 0
	v_mov_b32_e32 v7, 0
	v_mov_b32_e32 v6, 0
	v_mov_b32_e32 v13, 0
	v_mov_b32_e32 v12, 0
	v_mov_b32_e32 v11, 0
	v_mov_b32_e32 v10, 0
	v_mov_b32_e32 v17, 0
	v_mov_b32_e32 v16, 0
	v_mov_b32_e32 v15, 0
	v_mov_b32_e32 v14, 0
	s_cbranch_vccnz .LBB0_39
	v_lshrrev_b32_e32 v5, 2, v0
	v_or_b32_e32 v16, 0x600, v0
	v_and_b32_e32 v32, 31, v0
	v_and_b32_e32 v5, 32, v5
	v_or_b32_e32 v13, 0x500, v0
	v_lshrrev_b32_e32 v17, 3, v16
	v_or_b32_e32 v63, 0x700, v0
	v_lshlrev_b32_e32 v4, 1, v32
	v_lshrrev_b32_e32 v6, 3, v0
	v_lshrrev_b32_e32 v14, 3, v13
	v_and_or_b32 v36, v17, 8, v5
	v_lshrrev_b32_e32 v39, 3, v63
	v_and_or_b32 v7, v6, 8, v5
	v_and_b32_e32 v15, 8, v14
	v_xor_b32_e32 v50, v36, v4
	v_and_b32_e32 v36, 8, v39
	v_and_b32_e32 v2, 63, v0
	v_lshrrev_b32_e32 v30, 6, v0
	v_xor_b32_e32 v8, v7, v4
	v_or_b32_e32 v7, 16, v7
	v_or3_b32 v15, v15, v5, 16
	v_or3_b32 v5, v36, v5, 16
	v_or_b32_e32 v9, 0x100, v0
	v_xor_b32_e32 v7, v7, v4
	v_or_b32_e32 v11, 0x200, v0
	v_or_b32_e32 v12, 0x300, v0
	v_xor_b32_e32 v15, v15, v4
	v_xor_b32_e32 v4, v5, v4
	v_lshlrev_b32_e32 v5, 1, v2
	v_lshlrev_b32_e32 v36, 3, v30
	v_xor_b32_e32 v53, v36, v5
	v_lshrrev_b32_e32 v36, 6, v9
	v_lshrrev_b32_e32 v37, 6, v11
	v_lshrrev_b32_e32 v38, 6, v12
	v_lshrrev_b32_e32 v33, 5, v9
	v_lshrrev_b32_e32 v34, 5, v11
	v_lshrrev_b32_e32 v35, 5, v12
	v_lshlrev_b32_e32 v9, 3, v36
	v_lshlrev_b32_e32 v11, 3, v37
	v_lshlrev_b32_e32 v12, 3, v38
	v_and_b32_e32 v6, 24, v6
	v_and_b32_e32 v14, 56, v14
	v_and_b32_e32 v17, 0x58, v17
	v_and_b32_e32 v39, 0x78, v39
	v_lshlrev_b32_e32 v40, 2, v0
	v_xor_b32_e32 v9, v9, v5
	v_xor_b32_e32 v11, v11, v5
	v_xor_b32_e32 v12, v12, v5
	v_xor_b32_e32 v6, v6, v5
	v_xor_b32_e32 v14, v14, v5
	v_xor_b32_e32 v17, v17, v5
	v_xor_b32_e32 v5, v39, v5
	v_lshlrev_b32_e32 v39, 3, v1
	v_and_b32_e32 v40, 8, v40
	v_lshlrev_b32_e32 v41, 3, v0
	v_lshlrev_b32_e32 v42, 1, v0
	v_xor_b32_e32 v39, v39, v40
	v_and_b32_e32 v41, 32, v41
	v_and_b32_e32 v42, 16, v42
	v_or_b32_e32 v39, v39, v41
	v_or3_b32 v40, v41, v40, v42
	v_or_b32_e32 v41, v22, v18
	v_xor_b32_e32 v39, v39, v42
	v_lshlrev_b32_e32 v43, 1, v25
	v_lshlrev_b32_e32 v41, 1, v41
	v_lshlrev_b32_e32 v42, 5, v1
	v_xor_b32_e32 v40, v40, v43
	v_and_or_b32 v43, v42, 32, v41
	v_and_b32_e32 v44, 64, v42
	v_xor_b32_e32 v65, v43, v44
	v_lshlrev_b32_e32 v43, 3, v29
	v_and_or_b32 v44, v43, 32, v41
	v_and_b32_e32 v45, 0x48, v43
	v_xor_b32_e32 v66, v45, v44
	v_lshlrev_b32_e32 v44, 3, v21
	v_and_or_b32 v45, v44, 32, v41
	v_and_b32_e32 v46, 0x50, v44
	v_xor_b32_e32 v67, v46, v45
	v_lshlrev_b32_e32 v45, 3, v20
	v_and_or_b32 v46, v45, 32, v41
	v_and_b32_e32 v47, 0x58, v45
	v_xor_b32_e32 v68, v47, v46
	v_lshlrev_b32_e32 v46, 3, v25
	v_and_or_b32 v47, v46, 32, v41
	v_and_b32_e32 v48, 64, v46
	v_xor_b32_e32 v73, v47, v48
	v_lshlrev_b32_e32 v47, 3, v24
	v_and_or_b32 v48, v47, 32, v41
	v_and_b32_e32 v49, 0x48, v47
	v_xor_b32_e32 v74, v49, v48
	v_lshlrev_b32_e32 v48, 3, v27
	v_and_or_b32 v49, v48, 32, v41
	v_and_b32_e32 v51, 0x50, v48
	v_xor_b32_e32 v75, v51, v49
	v_lshlrev_b32_e32 v49, 3, v26
	v_and_or_b32 v41, v49, 32, v41
	v_and_b32_e32 v51, 0x58, v49
	v_xor_b32_e32 v76, v51, v41
	v_or_b32_e32 v41, v22, v28
	v_lshlrev_b32_e32 v41, 1, v41
	v_xor_b32_e32 v69, v41, v42
	v_and_b32_e32 v42, 0x60, v43
	v_xor_b32_e32 v70, v41, v42
	v_and_b32_e32 v42, 0x60, v44
	v_xor_b32_e32 v71, v41, v42
	v_and_b32_e32 v42, 0x60, v45
	v_lshrrev_b32_e32 v31, 5, v0
	v_xor_b32_e32 v72, v41, v42
	v_and_b32_e32 v42, 0x60, v46
	v_or_b32_e32 v0, 0x400, v0
	v_lshlrev_b32_e32 v3, 6, v31
	v_xor_b32_e32 v77, v42, v41
	v_and_b32_e32 v42, 0x60, v47
	v_lshrrev_b32_e32 v45, 5, v0
	v_xor_b32_e32 v78, v41, v42
	v_and_b32_e32 v42, 0x60, v48
	v_add_u32_e32 v43, v3, v8
	v_lshlrev_b32_e32 v3, 6, v45
	v_lshrrev_b32_e32 v47, 5, v13
	v_xor_b32_e32 v79, v41, v42
	v_and_b32_e32 v42, 0x60, v49
	v_add_u32_e32 v46, v3, v8
	v_lshlrev_b32_e32 v3, 6, v47
	v_lshrrev_b32_e32 v49, 5, v16
	v_add_u32_e32 v48, v3, v15
	v_lshlrev_b32_e32 v3, 6, v49
	v_lshrrev_b32_e32 v51, 5, v63
	v_add_u32_e32 v50, v3, v50
	v_lshlrev_b32_e32 v3, 6, v51
	v_lshrrev_b32_e32 v57, 6, v0
	v_add_u32_e32 v52, v3, v4
	v_lshlrev_b32_e32 v3, 7, v30
	v_lshlrev_b32_e32 v0, 7, v57
	v_lshrrev_b32_e32 v59, 6, v13
	v_add_u32_e32 v53, v3, v53
	v_lshlrev_b32_e32 v3, 7, v36
	v_add_u32_e32 v58, v0, v6
	v_lshlrev_b32_e32 v0, 7, v59
	v_lshrrev_b32_e32 v61, 6, v16
	v_lshlrev_b32_e32 v10, 6, v33
	v_xor_b32_e32 v80, v41, v42
	v_lshlrev_b32_e32 v42, 6, v35
	v_add_u32_e32 v54, v3, v9
	v_lshlrev_b32_e32 v3, 7, v37
	v_add_u32_e32 v60, v0, v14
	v_lshlrev_b32_e32 v0, 7, v61
	v_lshrrev_b32_e32 v63, 6, v63
	s_load_dwordx4 s[12:15], s[0:1], 0x20
	s_load_dwordx2 s[6:7], s[0:1], 0x0
	s_load_dwordx2 s[4:5], s[0:1], 0x18
	v_add_u32_e32 v41, v10, v7
	v_add_u32_e32 v42, v42, v7
	v_lshlrev_b32_e32 v7, 6, v34
	v_add_u32_e32 v55, v3, v11
	v_lshlrev_b32_e32 v3, 7, v38
	v_add_u32_e32 v62, v0, v17
	v_lshlrev_b32_e32 v0, 7, v63
	v_add_u32_e32 v44, v7, v8
	v_add_u32_e32 v56, v3, v12
	v_add_u32_e32 v64, v0, v5
	v_lshlrev_b32_e32 v0, 9, v1
	v_xor_b32_e32 v1, 8, v70
	v_xor_b32_e32 v3, 16, v71
	v_xor_b32_e32 v4, 24, v72
	v_xor_b32_e32 v5, 8, v78
	v_xor_b32_e32 v6, 16, v79
	v_xor_b32_e32 v7, 24, v80
	s_lshl_b32 s23, s2, 6
	v_add_u32_e32 v65, v0, v65
	v_add_u32_e32 v66, v0, v66
	v_add_u32_e32 v67, v0, v67
	v_add_u32_e32 v68, v0, v68
	v_add_u32_e32 v69, v0, v69
	v_add_u32_e32 v70, v0, v1
	v_add_u32_e32 v71, v0, v3
	v_add_u32_e32 v72, v0, v4
	v_add_u32_e32 v73, v0, v73
	v_add_u32_e32 v74, v0, v74
	v_add_u32_e32 v75, v0, v75
	v_add_u32_e32 v76, v0, v76
	v_add_u32_e32 v77, v0, v77
	v_add_u32_e32 v78, v0, v5
	v_add_u32_e32 v79, v0, v6
	v_add_u32_e32 v80, v0, v7
	v_or_b32_e32 v0, s23, v2
	v_or_b32_e32 v2, v23, v18
	s_waitcnt lgkmcnt(0)
	v_cmp_gt_u32_e32 vcc, s13, v0
	v_mad_i64_i32 v[0:1], s[2:3], s15, v0, 0
	v_lshlrev_b32_e32 v81, 6, v2
	v_or_b32_e32 v2, v23, v28
	v_mov_b32_e32 v83, 0
	v_lshl_add_u64 v[0:1], v[0:1], 1, s[4:5]
	v_lshlrev_b32_e32 v82, 6, v2
	s_mov_b32 s13, 0
	v_mov_b32_e32 v5, 0
	v_mov_b32_e32 v4, 0
	v_mov_b32_e32 v3, 0
	v_mov_b32_e32 v2, 0
	v_mov_b32_e32 v9, 0
	v_mov_b32_e32 v8, 0
	v_mov_b32_e32 v7, 0
	v_mov_b32_e32 v6, 0
	v_mov_b32_e32 v13, 0
	v_mov_b32_e32 v12, 0
	v_mov_b32_e32 v11, 0
	v_mov_b32_e32 v10, 0
	v_mov_b32_e32 v17, 0
	v_mov_b32_e32 v16, 0
	v_mov_b32_e32 v15, 0
	s_mov_b32 s15, 0x5040100
	v_mov_b32_e32 v14, v83
	v_mov_b32_e32 v84, s22
	s_branch .LBB0_6
.LBB0_5:
	s_or_b64 exec, exec, s[2:3]
	s_waitcnt vmcnt(0)
	ds_write_b16 v64, v86 offset:4096
	s_waitcnt lgkmcnt(0)
	s_barrier
	v_add_u32_e32 v85, v81, v39
	ds_read_u16 v86, v65 offset:4096
	ds_read_u16 v89, v66 offset:4224
	ds_read_u16 v87, v67 offset:4352
	ds_read_u16 v90, v68 offset:4480
	ds_read_u16 v91, v69 offset:4096
	ds_read_u16 v92, v70 offset:4224
	ds_read_u16 v93, v71 offset:4352
	ds_read_u16 v94, v72 offset:4480
	ds_read_b64 v[96:97], v85
	v_add_u32_e32 v85, v81, v40
	s_waitcnt lgkmcnt(5)
	v_perm_b32 v87, v90, v87, s15
	v_perm_b32 v86, v89, v86, s15
	v_add_u32_e32 v88, v82, v39
	v_add_u32_e32 v89, v82, v40
	ds_read_b64 v[98:99], v85
	ds_read_b64 v[100:101], v88
	ds_read_b64 v[102:103], v89
	s_waitcnt lgkmcnt(3)
	v_mfma_f32_16x16x16_bf16 v[14:17], v[86:87], v[96:97], v[14:17]
	v_perm_b32 v89, v94, v93, s15
	v_perm_b32 v88, v92, v91, s15
	s_add_i32 s16, s16, -1
	s_waitcnt lgkmcnt(1)
	v_mfma_f32_16x16x16_bf16 v[6:9], v[86:87], v[100:101], v[6:9]
	ds_read_u16 v85, v73 offset:6144
	ds_read_u16 v86, v74 offset:6272
	ds_read_u16 v87, v75 offset:6400
	ds_read_u16 v90, v76 offset:6528
	ds_read_u16 v91, v77 offset:6144
	ds_read_u16 v92, v78 offset:6272
	ds_read_u16 v93, v79 offset:6400
	ds_read_u16 v94, v80 offset:6528
	s_waitcnt lgkmcnt(4)
	v_perm_b32 v87, v90, v87, s15
	v_perm_b32 v86, v86, v85, s15
	v_mfma_f32_16x16x16_bf16 v[10:13], v[88:89], v[96:97], v[10:13]
	s_add_i32 s13, s13, 32
	s_cmp_lg_u32 s16, 0
	s_waitcnt lgkmcnt(0)
	v_mfma_f32_16x16x16_bf16 v[2:5], v[88:89], v[100:101], v[2:5]
	v_perm_b32 v89, v94, v93, s15
	v_perm_b32 v88, v92, v91, s15
	s_barrier
	v_mfma_f32_16x16x16_bf16 v[14:17], v[86:87], v[98:99], v[14:17]
	v_mfma_f32_16x16x16_bf16 v[10:13], v[88:89], v[98:99], v[10:13]
	v_mfma_f32_16x16x16_bf16 v[6:9], v[86:87], v[102:103], v[6:9]
	v_mfma_f32_16x16x16_bf16 v[2:5], v[88:89], v[102:103], v[2:5]
	s_cbranch_scc0 .LBB0_38
.LBB0_6:
	;;#ASMSTART
	v_mov_b32 v86, v84
	;;#ASMEND
	v_add_u32_e32 v85, s13, v32
	v_add_u32_e32 v87, v86, v31
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	v_cmp_gt_u32_e64 s[2:3], s9, v85
	s_and_b64 s[18:19], s[2:3], s[4:5]
	v_mov_b32_e32 v88, v83
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_8
	v_mad_i64_i32 v[90:91], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[88:89], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[90:91], v[90:91], 1, s[6:7]
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[90:91]
	global_load_ushort v88, v[88:89], off
.LBB0_8:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v87, v86, v33
	s_waitcnt vmcnt(0)
	ds_write_b16 v43, v88
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	v_mov_b32_e32 v88, 0
	s_and_b64 s[18:19], s[2:3], s[4:5]
	v_mov_b32_e32 v89, v88
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_10
	v_mad_i64_i32 v[92:93], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[90:91], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[92:93], v[92:93], 1, s[6:7]
	v_lshl_add_u64 v[90:91], v[90:91], 1, v[92:93]
	global_load_ushort v89, v[90:91], off
.LBB0_10:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v87, v86, v34
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	s_and_b64 s[18:19], s[2:3], s[4:5]
	s_waitcnt vmcnt(0)
	ds_write_b16 v41, v89
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_12
	v_mad_i64_i32 v[90:91], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[88:89], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[90:91], v[90:91], 1, s[6:7]
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[90:91]
	global_load_ushort v88, v[88:89], off
.LBB0_12:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v87, v86, v35
	s_waitcnt vmcnt(0)
	ds_write_b16 v44, v88
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	v_mov_b32_e32 v88, 0
	s_and_b64 s[18:19], s[2:3], s[4:5]
	v_mov_b32_e32 v89, v88
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_14
	v_mad_i64_i32 v[92:93], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[90:91], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[92:93], v[92:93], 1, s[6:7]
	v_lshl_add_u64 v[90:91], v[90:91], 1, v[92:93]
	global_load_ushort v89, v[90:91], off
.LBB0_14:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v87, v86, v45
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	s_and_b64 s[18:19], s[2:3], s[4:5]
	s_waitcnt vmcnt(0)
	ds_write_b16 v42, v89
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_16
	v_mad_i64_i32 v[90:91], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[88:89], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[90:91], v[90:91], 1, s[6:7]
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[90:91]
	global_load_ushort v88, v[88:89], off
.LBB0_16:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v87, v86, v47
	s_waitcnt vmcnt(0)
	ds_write_b16 v46, v88
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	v_mov_b32_e32 v88, 0
	s_and_b64 s[18:19], s[2:3], s[4:5]
	v_mov_b32_e32 v89, v88
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_18
	v_mad_i64_i32 v[92:93], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[90:91], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[92:93], v[92:93], 1, s[6:7]
	v_lshl_add_u64 v[90:91], v[90:91], 1, v[92:93]
	global_load_ushort v89, v[90:91], off
.LBB0_18:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v87, v86, v49
	v_cmp_gt_u32_e64 s[4:5], s8, v87
	s_and_b64 s[18:19], s[2:3], s[4:5]
	s_waitcnt vmcnt(0)
	ds_write_b16 v48, v89
	s_and_saveexec_b64 s[4:5], s[18:19]
	s_cbranch_execz .LBB0_20
	v_mad_i64_i32 v[90:91], s[18:19], v87, s10, 0
	v_mad_i64_i32 v[88:89], s[18:19], v85, s11, 0
	v_lshl_add_u64 v[90:91], v[90:91], 1, s[6:7]
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[90:91]
	global_load_ushort v88, v[88:89], off
.LBB0_20:
	s_or_b64 exec, exec, s[4:5]
	v_add_u32_e32 v86, v86, v51
	v_cmp_gt_u32_e64 s[4:5], s8, v86
	v_mov_b32_e32 v87, 0
	s_waitcnt vmcnt(0)
	ds_write_b16 v50, v88
	s_and_b64 s[4:5], s[2:3], s[4:5]
	v_mov_b32_e32 v88, v87
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_22
	v_mad_i64_i32 v[90:91], s[4:5], v86, s10, 0
	v_mad_i64_i32 v[88:89], s[4:5], v85, s11, 0
	v_lshl_add_u64 v[90:91], v[90:91], 1, s[6:7]
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[90:91]
	global_load_ushort v88, v[88:89], off
.LBB0_22:
	s_or_b64 exec, exec, s[2:3]
	v_mov_b32_e32 v85, s13
	;;#ASMSTART
	v_mov_b32 v85, v85
	;;#ASMEND
	s_waitcnt vmcnt(0)
	ds_write_b16 v52, v88
	v_add_u32_e32 v86, v85, v30
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	s_and_b64 s[4:5], vcc, s[2:3]
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_24
	v_mad_i64_i32 v[86:87], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[86:87], v[86:87], 1, v[0:1]
	global_load_ushort v87, v[86:87], off
.LBB0_24:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v86, v85, v36
	s_waitcnt vmcnt(0)
	ds_write_b16 v53, v87 offset:4096
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	v_mov_b32_e32 v87, 0
	s_and_b64 s[4:5], vcc, s[2:3]
	v_mov_b32_e32 v88, v87
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_26
	v_mad_i64_i32 v[88:89], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[0:1]
	global_load_ushort v88, v[88:89], off
.LBB0_26:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v86, v85, v37
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	s_and_b64 s[4:5], vcc, s[2:3]
	s_waitcnt vmcnt(0)
	ds_write_b16 v54, v88 offset:4096
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_28
	v_mad_i64_i32 v[86:87], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[86:87], v[86:87], 1, v[0:1]
	global_load_ushort v87, v[86:87], off
.LBB0_28:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v86, v85, v38
	s_waitcnt vmcnt(0)
	ds_write_b16 v55, v87 offset:4096
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	v_mov_b32_e32 v87, 0
	s_and_b64 s[4:5], vcc, s[2:3]
	v_mov_b32_e32 v88, v87
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_30
	v_mad_i64_i32 v[88:89], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[0:1]
	global_load_ushort v88, v[88:89], off
.LBB0_30:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v86, v85, v57
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	s_and_b64 s[4:5], vcc, s[2:3]
	s_waitcnt vmcnt(0)
	ds_write_b16 v56, v88 offset:4096
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_32
	v_mad_i64_i32 v[86:87], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[86:87], v[86:87], 1, v[0:1]
	global_load_ushort v87, v[86:87], off
.LBB0_32:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v86, v85, v59
	s_waitcnt vmcnt(0)
	ds_write_b16 v58, v87 offset:4096
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	v_mov_b32_e32 v87, 0
	s_and_b64 s[4:5], vcc, s[2:3]
	v_mov_b32_e32 v88, v87
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_34
	v_mad_i64_i32 v[88:89], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[88:89], v[88:89], 1, v[0:1]
	global_load_ushort v88, v[88:89], off
.LBB0_34:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v86, v85, v61
	v_cmp_gt_u32_e64 s[2:3], s12, v86
	s_and_b64 s[4:5], vcc, s[2:3]
	s_waitcnt vmcnt(0)
	ds_write_b16 v60, v88 offset:4096
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_36
	v_mad_i64_i32 v[86:87], s[4:5], v86, s14, 0
	v_lshl_add_u64 v[86:87], v[86:87], 1, v[0:1]
	global_load_ushort v87, v[86:87], off
.LBB0_36:
	s_or_b64 exec, exec, s[2:3]
	v_add_u32_e32 v85, v85, v63
	v_cmp_gt_u32_e64 s[2:3], s12, v85
	s_and_b64 s[4:5], vcc, s[2:3]
	v_mov_b32_e32 v86, 0
	s_waitcnt vmcnt(0)
	ds_write_b16 v62, v87 offset:4096
	s_and_saveexec_b64 s[2:3], s[4:5]
	s_cbranch_execz .LBB0_5
	v_mad_i64_i32 v[86:87], s[4:5], v85, s14, 0
	v_lshl_add_u64 v[86:87], v[86:87], 1, v[0:1]
	global_load_ushort v86, v[86:87], off
	s_branch .LBB0_5
.LBB0_38:
	v_mov_b32_e32 v30, v23
	v_mov_b32_e32 v31, v22
.LBB0_39:
	s_load_dwordx2 s[20:21], s[0:1], 0x30
	s_load_dwordx4 s[16:19], s[0:1], 0x38
	v_add_u32_e32 v30, s22, v30
	v_or_b32_e32 v31, s23, v31
	v_or_b32_e32 v0, v30, v18
	v_or_b32_e32 v1, v31, v19
	s_waitcnt lgkmcnt(0)
	v_cmp_gt_u32_e64 s[4:5], s16, v0
	v_cmp_gt_u32_e32 vcc, s17, v1
	v_mad_i64_i32 v[18:19], s[0:1], s18, v0, 0
	s_and_b64 s[2:3], s[4:5], vcc
	v_mad_i64_i32 v[0:1], s[0:1], s19, v1, 0
	v_lshl_add_u64 v[22:23], v[18:19], 2, s[20:21]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execz .LBB0_41
	v_lshl_add_u64 v[18:19], v[0:1], 2, v[22:23]
	global_store_dword v[18:19], v14, off
.LBB0_41:
	s_or_b64 exec, exec, s[0:1]
	v_or_b32_e32 v14, v31, v29
	v_cmp_gt_u32_e64 s[0:1], s17, v14
	s_and_b64 s[6:7], s[4:5], s[0:1]
	v_mad_i64_i32 v[18:19], s[2:3], s19, v14, 0
	s_and_saveexec_b64 s[2:3], s[6:7]
	s_cbranch_execz .LBB0_43
	v_lshl_add_u64 v[32:33], v[18:19], 2, v[22:23]
	global_store_dword v[32:33], v15, off
.LBB0_43:
	s_or_b64 exec, exec, s[2:3]
	v_or_b32_e32 v14, v31, v21
	v_cmp_gt_u32_e64 s[2:3], s17, v14
	s_and_b64 s[8:9], s[4:5], s[2:3]
	v_mad_i64_i32 v[14:15], s[6:7], s19, v14, 0
	s_and_saveexec_b64 s[6:7], s[8:9]
	s_cbranch_execz .LBB0_45
	v_lshl_add_u64 v[32:33], v[14:15], 2, v[22:23]
	global_store_dword v[32:33], v16, off
.LBB0_45:
	s_or_b64 exec, exec, s[6:7]
	v_or_b32_e32 v16, v31, v20
	v_cmp_gt_u32_e64 s[6:7], s17, v16
	s_and_b64 s[10:11], s[4:5], s[6:7]
	v_mad_i64_i32 v[20:21], s[8:9], s19, v16, 0
	s_and_saveexec_b64 s[8:9], s[10:11]
	s_cbranch_execz .LBB0_47
	v_lshl_add_u64 v[32:33], v[20:21], 2, v[22:23]
	global_store_dword v[32:33], v17, off
.LBB0_47:
	s_or_b64 exec, exec, s[8:9]
	v_or_b32_e32 v16, v31, v25
	v_cmp_gt_u32_e64 s[8:9], s17, v16
	s_and_b64 s[12:13], s[4:5], s[8:9]
	v_mad_i64_i32 v[16:17], s[10:11], s19, v16, 0
	s_and_saveexec_b64 s[10:11], s[12:13]
	s_cbranch_execz .LBB0_49
	v_lshl_add_u64 v[32:33], v[16:17], 2, v[22:23]
	global_store_dword v[32:33], v10, off
.LBB0_49:
	s_or_b64 exec, exec, s[10:11]
	v_or_b32_e32 v10, v31, v24
	v_cmp_gt_u32_e64 s[10:11], s17, v10
	s_and_b64 s[14:15], s[4:5], s[10:11]
	v_mad_i64_i32 v[24:25], s[12:13], s19, v10, 0
	s_and_saveexec_b64 s[12:13], s[14:15]
	s_cbranch_execz .LBB0_51
	v_lshl_add_u64 v[32:33], v[24:25], 2, v[22:23]
	global_store_dword v[32:33], v11, off
.LBB0_51:
	s_or_b64 exec, exec, s[12:13]
	v_or_b32_e32 v10, v31, v27
	v_cmp_gt_u32_e64 s[12:13], s17, v10
	s_and_b64 s[22:23], s[4:5], s[12:13]
	v_mad_i64_i32 v[10:11], s[14:15], s19, v10, 0
	s_and_saveexec_b64 s[14:15], s[22:23]
	s_cbranch_execz .LBB0_53
	v_lshl_add_u64 v[32:33], v[10:11], 2, v[22:23]
	global_store_dword v[32:33], v12, off
.LBB0_53:
	s_or_b64 exec, exec, s[14:15]
	v_or_b32_e32 v12, v31, v26
	v_cmp_gt_u32_e64 s[14:15], s17, v12
	s_and_b64 s[22:23], s[4:5], s[14:15]
	v_mad_i64_i32 v[26:27], s[4:5], s19, v12, 0
	s_and_saveexec_b64 s[4:5], s[22:23]
	s_cbranch_execz .LBB0_55
	v_lshl_add_u64 v[22:23], v[26:27], 2, v[22:23]
	global_store_dword v[22:23], v13, off
.LBB0_55:
	s_or_b64 exec, exec, s[4:5]
	v_or_b32_e32 v12, v30, v28
	v_cmp_gt_u32_e64 s[4:5], s16, v12
	v_mad_i64_i32 v[12:13], s[16:17], s18, v12, 0
	s_and_b64 s[22:23], s[4:5], vcc
	v_lshl_add_u64 v[12:13], v[12:13], 2, s[20:21]
	s_and_saveexec_b64 s[16:17], s[22:23]
	s_cbranch_execnz .LBB0_64
	s_or_b64 exec, exec, s[16:17]
	s_and_b64 s[16:17], s[4:5], s[0:1]
	s_and_saveexec_b64 s[0:1], s[16:17]
	s_cbranch_execnz .LBB0_65
.LBB0_57:
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[2:3]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execnz .LBB0_66
.LBB0_58:
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[6:7]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execnz .LBB0_67
.LBB0_59:
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[8:9]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execnz .LBB0_68
.LBB0_60:
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[10:11]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execnz .LBB0_69
.LBB0_61:
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[12:13]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execnz .LBB0_70
.LBB0_62:
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[0:1], s[4:5], s[14:15]
	s_and_saveexec_b64 s[2:3], s[0:1]
	s_cbranch_execnz .LBB0_71
.LBB0_63:
	s_endpgm
.LBB0_64:
	v_lshl_add_u64 v[0:1], v[0:1], 2, v[12:13]
	global_store_dword v[0:1], v6, off
	s_or_b64 exec, exec, s[16:17]
	s_and_b64 s[16:17], s[4:5], s[0:1]
	s_and_saveexec_b64 s[0:1], s[16:17]
	s_cbranch_execz .LBB0_57
.LBB0_65:
	v_lshl_add_u64 v[0:1], v[18:19], 2, v[12:13]
	global_store_dword v[0:1], v7, off
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[2:3]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execz .LBB0_58
.LBB0_66:
	v_lshl_add_u64 v[0:1], v[14:15], 2, v[12:13]
	global_store_dword v[0:1], v8, off
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[6:7]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execz .LBB0_59
.LBB0_67:
	v_lshl_add_u64 v[0:1], v[20:21], 2, v[12:13]
	global_store_dword v[0:1], v9, off
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[8:9]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execz .LBB0_60
.LBB0_68:
	v_lshl_add_u64 v[0:1], v[16:17], 2, v[12:13]
	global_store_dword v[0:1], v2, off
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[10:11]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execz .LBB0_61
.LBB0_69:
	v_lshl_add_u64 v[0:1], v[24:25], 2, v[12:13]
	global_store_dword v[0:1], v3, off
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[2:3], s[4:5], s[12:13]
	s_and_saveexec_b64 s[0:1], s[2:3]
	s_cbranch_execz .LBB0_62
.LBB0_70:
	v_lshl_add_u64 v[0:1], v[10:11], 2, v[12:13]
	global_store_dword v[0:1], v4, off
	s_or_b64 exec, exec, s[0:1]
	s_and_b64 s[0:1], s[4:5], s[14:15]
	s_and_saveexec_b64 s[2:3], s[0:1]
	s_cbranch_execz .LBB0_63
.LBB0_71:
	v_lshl_add_u64 v[0:1], v[26:27], 2, v[12:13]
	global_store_dword v[0:1], v5, off
	s_endpgm
	.section	.rodata,"a",@progbits
	.p2align	6, 0x0
	.amdhsa_kernel gemm
		.amdhsa_group_segment_fixed_size 8192
		.amdhsa_private_segment_fixed_size 0
		.amdhsa_kernarg_size 72
		.amdhsa_user_sgpr_count 2
		.amdhsa_user_sgpr_dispatch_ptr 0
		.amdhsa_user_sgpr_queue_ptr 0
		.amdhsa_user_sgpr_kernarg_segment_ptr 1
		.amdhsa_user_sgpr_dispatch_id 0
		.amdhsa_user_sgpr_kernarg_preload_length 0
		.amdhsa_user_sgpr_kernarg_preload_offset 0
		.amdhsa_user_sgpr_private_segment_size 0
		.amdhsa_uses_dynamic_stack 0
		.amdhsa_enable_private_segment 0
		.amdhsa_system_sgpr_workgroup_id_x 1
		.amdhsa_system_sgpr_workgroup_id_y 1
		.amdhsa_system_sgpr_workgroup_id_z 0
		.amdhsa_system_sgpr_workgroup_info 0
		.amdhsa_system_vgpr_workitem_id 0
		.amdhsa_next_free_vgpr 104
		.amdhsa_next_free_sgpr 24
		.amdhsa_accum_offset 104
		.amdhsa_reserve_vcc 1
		.amdhsa_reserve_xnack_mask 1
		.amdhsa_float_round_mode_32 0
		.amdhsa_float_round_mode_16_64 0
		.amdhsa_float_denorm_mode_32 3
		.amdhsa_float_denorm_mode_16_64 3
		.amdhsa_dx10_clamp 1
		.amdhsa_ieee_mode 1
		.amdhsa_fp16_overflow 0
		.amdhsa_tg_split 0
		.amdhsa_exception_fp_ieee_invalid_op 0
		.amdhsa_exception_fp_denorm_src 0
		.amdhsa_exception_fp_ieee_div_zero 0
		.amdhsa_exception_fp_ieee_overflow 0
		.amdhsa_exception_fp_ieee_underflow 0
		.amdhsa_exception_fp_ieee_inexact 0
		.amdhsa_exception_int_div_zero 0
	.end_amdhsa_kernel
	.text
.Lfunc_end0:
	.size	gemm, .Lfunc_end0-gemm

	.set gemm.num_vgpr, 104
	.set gemm.num_agpr, 0
	.set gemm.numbered_sgpr, 24
	.set gemm.num_named_barrier, 0
	.set gemm.private_seg_size, 0
	.set gemm.uses_vcc, 1
	.set gemm.uses_flat_scratch, 0
	.set gemm.has_dyn_sized_stack, 0
	.set gemm.has_recursion, 0
	.set gemm.has_indirect_call, 0
	.p2alignl 6, 3212836864
	.fill 256, 4, 3212836864
	.section	.AMDGPU.gpr_maximums,"",@progbits
	.set amdgpu.max_num_vgpr, 0
	.set amdgpu.max_num_agpr, 0
	.set amdgpu.max_num_sgpr, 0
	.set amdgpu.max_num_named_barrier, 0
	.text
	.section	".note.GNU-stack","",@progbits
	.amdgpu_metadata
---
amdhsa.kernels:
  - .agpr_count:     0
    .args:
      - .address_space:  global
        .offset:         0
        .size:           8
        .value_kind:     global_buffer
      - .offset:         8
        .size:           4
        .value_kind:     by_value
      - .offset:         12
        .size:           4
        .value_kind:     by_value
      - .offset:         16
        .size:           4
        .value_kind:     by_value
      - .offset:         20
        .size:           4
        .value_kind:     by_value
      - .address_space:  global
        .offset:         24
        .size:           8
        .value_kind:     global_buffer
      - .offset:         32
        .size:           4
        .value_kind:     by_value
      - .offset:         36
        .size:           4
        .value_kind:     by_value
      - .offset:         40
        .size:           4
        .value_kind:     by_value
      - .offset:         44
        .size:           4
        .value_kind:     by_value
      - .address_space:  global
        .offset:         48
        .size:           8
        .value_kind:     global_buffer
      - .offset:         56
        .size:           4
        .value_kind:     by_value
      - .offset:         60
        .size:           4
        .value_kind:     by_value
      - .offset:         64
        .size:           4
        .value_kind:     by_value
      - .offset:         68
        .size:           4
        .value_kind:     by_value
    .group_segment_fixed_size: 8192
    .kernarg_segment_align: 8
    .kernarg_segment_size: 72
    .max_flat_workgroup_size: 256
    .name:           gemm
    .private_segment_fixed_size: 0
    .reqd_workgroup_size:
      - 256
      - 1
      - 1
    .sgpr_count:     30
    .sgpr_spill_count: 0
    .symbol:         gemm.kd
    .uniform_work_group_size: 1
    .uses_dynamic_stack: false
    .vgpr_count:     104
    .vgpr_spill_count: 0
    .wavefront_size: 64
amdhsa.target:   amdgcn-amd-amdhsa--gfx942
amdhsa.version:
  - 1
  - 2
...

	.end_amdgpu_metadata
